//! Every bad input fails with a clear error and leaves the database byte-for-byte as it
//! was (compared by a full dump before and after).

use crate::{Cli, dump};

/// One bad invocation: arguments, stdin, extra environment, expected exit code, and a
/// fragment the error must contain.
type Case<'a> = (
    &'a [&'a str],
    &'a str,
    &'a [(&'a str, &'a str)],
    i32,
    &'a str,
);

#[test]
fn bad_input_changes_nothing() {
    let cli = Cli::new();
    cli.run(&[
        "company",
        "set",
        "--provider",
        "microsoft",
        "--user",
        "orders@contoso.example",
        "--fax-format",
        "{0}@fax.example.com",
    ])
    .ok();
    cli.run(&[
        "account",
        "add",
        "--provider",
        "microsoft",
        "--user",
        "sa@contoso.example",
        "--bind",
        "SystemUser:User_Name:sa",
    ])
    .ok();
    cli.run_with(
        &[
            "account",
            "add",
            "--provider",
            "none",
            "--host",
            "smtp.example.net",
            "--user",
            "bob",
            "--password-stdin",
        ],
        "pw",
        &[],
    )
    .ok();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let before = runtime.block_on(dump(cli.path()));
    assert!(
        before.contains("orders@contoso.example"),
        "the dump shows the data:\n{before}"
    );

    let wrong_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let cases: &[Case] = &[
        (
            &["company", "set", "--port", "0"],
            "",
            &[],
            2,
            "from 1 to 65535",
        ),
        (
            &["company", "set", "--port", "70000"],
            "",
            &[],
            2,
            "from 1 to 65535",
        ),
        (
            &["company", "set", "--host", "smtp://smtp.office365.com"],
            "",
            &[],
            2,
            "URL scheme",
        ),
        (
            &["company", "set", "--host", "smtp office365"],
            "",
            &[],
            2,
            "contains a space",
        ),
        (
            &["company", "set", "--timeout-ms", "0"],
            "",
            &[],
            2,
            "out of range",
        ),
        (
            &["company", "set", "--password-stdin"],
            "secret",
            &[],
            2,
            "signs in with OAuth",
        ),
        (
            &["company", "set", "--user", "not-an-address"],
            "",
            &[],
            2,
            "not an email address",
        ),
        (
            &[
                "company",
                "set",
                "--user",
                "a@contoso.example\r\nBcc: x@evil.example",
            ],
            "",
            &[],
            2,
            "line break",
        ),
        (
            &["company", "set", "--fax-format", "fax.example.com"],
            "",
            &[],
            2,
            "exactly once",
        ),
        (&["company", "set"], "", &[], 2, "nothing to change"),
        (
            &["company", "set", "--provider", "yahoo"],
            "",
            &[],
            2,
            "not a provider",
        ),
        (
            &[
                "company",
                "set",
                "--provider",
                "google",
                "--host",
                "smtp.gmail.com",
            ],
            "",
            &[],
            2,
            "--gmail-api-url",
        ),
        (
            &["company", "set", "--allow-plaintext-loopback"],
            "",
            &[],
            2,
            "not a loopback address",
        ),
        (
            &[
                "account",
                "add",
                "--provider",
                "microsoft",
                "--user",
                "x@contoso.example",
                "--bind",
                "systemuser:USER_NAME: SA ",
            ],
            "",
            &[],
            1,
            "already bound to SystemUser:User_Name:sa",
        ),
        (
            &["account", "add", "--provider", "none", "--host", "h\nx"],
            "",
            &[],
            2,
            "line break",
        ),
        (
            &["account", "add", "--provider", "none"],
            "",
            &[],
            2,
            "invalid host: is empty",
        ),
        (
            &["account", "add", "--user", "a@b.example"],
            "",
            &[],
            2,
            "--provider is required",
        ),
        (
            &[
                "account",
                "add",
                "--provider",
                "none",
                "--host",
                "h",
                "--bind",
                "SystemUser:User_Name:",
            ],
            "",
            &[],
            2,
            "column value",
        ),
        (
            &[
                "account",
                "add",
                "--provider",
                "none",
                "--host",
                "h",
                "--password-stdin",
            ],
            "",
            &[],
            2,
            "empty password",
        ),
        (
            &["account", "edit", "99", "--host", "h.example"],
            "",
            &[],
            1,
            "there is no account 99",
        ),
        (
            &[
                "account",
                "edit",
                "2",
                "--provider",
                "google",
                "--port",
                "587",
            ],
            "",
            &[],
            2,
            "Gmail API",
        ),
        (
            &["account", "edit", "1", "--user", "bad address"],
            "",
            &[],
            2,
            "not an email address",
        ),
        (&["account", "edit", "1"], "", &[], 2, "nothing to change"),
        (
            &["account", "remove", "99"],
            "",
            &[],
            1,
            "there is no account 99",
        ),
        (&["account", "show", "abc"], "", &[], 2, "invalid value"),
        (
            &["settings", "set", "can-sign-in-when-sending", "maybe"],
            "",
            &[],
            2,
            "invalid value",
        ),
        (
            &["resolve", "--user", "sa", "--feature", "payroll"],
            "",
            &[],
            2,
            "not a known feature",
        ),
        (
            &["fax-address", "555-CALL-NOW"],
            "",
            &[],
            2,
            "contains the letter",
        ),
        (
            &["company", "show"],
            "",
            &[("MAILROOM_KEY", wrong_key)],
            1,
            "this host lacks key",
        ),
        (
            &["company", "show"],
            "",
            &[("MAILROOM_KEY", "too-short")],
            1,
            "MAILROOM_KEY is set but unusable",
        ),
    ];
    for (args, stdin, env, code, fragment) in cases {
        let run = cli.run_with(args, stdin, env);
        assert_eq!(run.code, *code, "{args:?}: {run:?}");
        assert!(
            run.stderr.contains(fragment),
            "{args:?}: stderr lacks `{fragment}`: {}",
            run.stderr
        );
        assert!(run.stderr.starts_with("error"), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr
                .lines()
                .filter(|line| !line.trim().is_empty())
                .count()
                <= 3,
            "{args:?}: too long: {}",
            run.stderr
        );
        let after = runtime.block_on(dump(cli.path()));
        assert_eq!(before, after, "{args:?} changed the database");
    }
}
