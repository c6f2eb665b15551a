//! `mailroom demo`: the whole flow offline, in one command, against an in-process sandbox:
//! configure a company account (Google style) and a user account (Microsoft style) bound to
//! system user `sa`, sign both in through the real loopback PKCE flow (the demo plays the
//! browser), send through each transport (one with an attachment), refresh a short-lived
//! token, queue 20 messages and drain them with the agent, meet `Failed to obtain an
//! access token` with sign-in disabled, make the company account a shared mailbox that a
//! delegate signs in for, and move the user account to the Microsoft Graph route (its SMTP
//! sign-in lacks Mail.Send until it signs in again; then `sendMail`, and a message with a
//! 5 MiB attachment through a draft and an upload session). Every step is verified against what the
//! sandbox stored; the exit code is 0 only if every step verified.
//!
//! This module is the frame: set up, run the steps in order (a step runs only when the
//! ones it needs verified), and report them as a table or JSON. The steps are in
//! `steps.rs`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail, ensure};
use clap::Args;
use mailroom::MailroomOptions;
use mailroom_accounts::Accounts;
use mailroom_model::Provider;
use mailroom_sandbox::{Sandbox, SandboxConfig};
use mailroom_tokens::registration::Apps;

use crate::commands::Output;
use crate::context::Context;

mod steps;

use steps::{
    configure, graph_route, queue_and_drain, refresh, send_gmail, send_smtp, shared_mailbox,
    sign_in, sign_in_disabled,
};

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Keep the temporary database, its key and the sandbox's files (CA, received .eml
    /// files) for a look around; their paths are printed.
    #[arg(long)]
    pub(crate) keep: bool,
}

/// One verified step of the demo.
#[derive(Debug)]
struct Step {
    name: &'static str,
    outcome: Result<Done>,
}

/// What a step did, and the files that show it.
#[derive(Debug, Default)]
struct Done {
    what: String,
    files: Vec<PathBuf>,
}

impl Done {
    fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            files: Vec::new(),
        }
    }

    fn with_files(mut self, files: impl IntoIterator<Item = PathBuf>) -> Self {
        self.files.extend(files);
        self
    }
}

/// Everything the steps share.
struct Demo {
    sandbox: Sandbox,
    context: Context,
    user_account: Option<i64>,
    options: MailroomOptions,
}

pub(crate) async fn run(args: DemoArgs, database_url: Option<&str>, json: bool) -> Result<Output> {
    let workdir = tempfile::Builder::new()
        .prefix("mailroom-demo-")
        .tempdir()
        .context("cannot create a temporary directory for the demo")?;
    // A sandbox that cannot start or a database the demo must not touch is an error
    // before any step: nothing to tabulate.
    let mut demo = setup(workdir.path(), database_url).await?;
    let mut steps = Vec::new();
    let mut locations = locations_of(&demo);
    run_steps(&mut demo, &mut steps).await;
    locations.push((
        "received mail",
        format!(
            "{} ({} .eml files)",
            demo.sandbox.mailbox().dir().display(),
            demo.sandbox.mailbox().messages().len()
        ),
    ));
    drop(demo);
    let kept = if args.keep {
        Some(workdir.keep())
    } else {
        None
    };
    let table = summary(&steps, &locations, kept.as_deref());
    let report = json_report(&steps, &locations, kept.as_deref());
    let failed = steps.iter().filter(|step| step.outcome.is_err()).count();
    if failed > 0 {
        // The table (or JSON) still goes to stdout: it says which step failed and why.
        crate::logging::print_stdout(&if json {
            serde_json::to_string_pretty(&report).expect("JSON values serialize")
        } else {
            table
        })?;
        bail!(
            "{failed} of {} demo steps did not verify (see the table above); run with -vv (or MAILROOM_LOG=debug) for details",
            steps.len()
        );
    }
    Ok(Output::new(table, report))
}

fn json_report(
    steps: &[Step],
    locations: &[(&'static str, String)],
    kept: Option<&Path>,
) -> serde_json::Value {
    let steps: Vec<serde_json::Value> = steps
        .iter()
        .map(|step| match &step.outcome {
            Ok(done) => serde_json::json!({
                "step": step.name,
                "verified": true,
                "what": done.what,
                "files": done.files,
            }),
            Err(error) => serde_json::json!({
                "step": step.name,
                "verified": false,
                "what": format!("{error:#}"),
                "files": [],
            }),
        })
        .collect();
    let locations: serde_json::Map<String, serde_json::Value> = locations
        .iter()
        // Keys are snake_case like every JSON key ("CA certificate" -> "ca_certificate").
        .map(|(label, value)| {
            let key = label.to_ascii_lowercase().replace([' ', '-'], "_");
            (key, serde_json::json!(value))
        })
        .collect();
    serde_json::json!({ "steps": steps, "locations": locations, "kept": kept })
}

fn locations_of(demo: &Demo) -> Vec<(&'static str, String)> {
    let mut locations = vec![(
        "database",
        crate::context::redact_url(&demo.context.database_url),
    )];
    locations.push((
        "key",
        match &demo.context.key_source {
            mailroom_crypto::KeySource::File { path, .. } => path.display().to_string(),
            mailroom_crypto::KeySource::Environment => "MAILROOM_KEY".to_owned(),
        },
    ));
    locations.push(("sandbox", demo.sandbox.dir().display().to_string()));
    locations.push((
        "CA certificate",
        demo.sandbox.endpoints().ca_file.display().to_string(),
    ));
    locations
}

/// Starts the sandbox and opens the database (a temporary SQLite file unless one is
/// given; a given one must hold no configuration, as the demo writes its own).
async fn setup(workdir: &Path, database_url: Option<&str>) -> Result<Demo> {
    let mut config = SandboxConfig::new(workdir.join("sandbox"));
    config.auto_approve = true;
    config.clients = crate::commands::sandbox::registered_clients();
    let sandbox = Sandbox::start(config)
        .await
        .context("cannot start the sandbox")?;
    let given = database_url.map(str::trim).filter(|url| !url.is_empty());
    let url = match given {
        Some(url) => url.to_owned(),
        None => format!("sqlite://{}", workdir.join("demo.sqlite").display()),
    };
    let context = Context::open(Some(&url)).await?;
    if given.is_some() {
        let accounts = Accounts::new(&context.db, &context.key);
        let configured = accounts.company().await?.is_some()
            || !accounts.user_accounts().await?.is_empty()
            || !Apps::new(&context.db, &context.key)
                .list()
                .await?
                .is_empty();
        ensure!(
            !configured,
            "the database {} already holds accounts or app registrations, and the demo would overwrite them; give an empty database, or leave out --database-url (and MAILROOM_DATABASE_URL) to use a temporary one",
            crate::context::redact_url(&url)
        );
    }
    let mut options = MailroomOptions::new(context.key.clone());
    // The sandbox's SMTP certificate comes from a CA made at start: trust it, verify it.
    options.extra_root_pem = Some(sandbox.ca_pem().as_bytes().to_vec());
    Ok(Demo {
        sandbox,
        context,
        user_account: None,
        options,
    })
}

async fn run_steps(demo: &mut Demo, steps: &mut Vec<Step>) {
    macro_rules! step {
        ($name:expr, $future:expr) => {{
            eprintln!("demo: {} ...", $name);
            let outcome = $future.await;
            let ok = outcome.is_ok();
            steps.push(Step {
                name: $name,
                outcome,
            });
            ok
        }};
    }
    if !step!("configure", configure(demo)) {
        return;
    }
    let company_signed_in = step!("sign in company (Google)", sign_in(demo, Provider::Google));
    let user_signed_in = step!(
        "sign in user (Microsoft)",
        sign_in(demo, Provider::Microsoft)
    );
    if user_signed_in {
        step!("send via SMTP + attachment", send_smtp(demo));
    }
    if company_signed_in {
        step!("send via Gmail API", send_gmail(demo));
    }
    if user_signed_in {
        step!("token refresh", refresh(demo));
    }
    if company_signed_in && user_signed_in {
        step!("queue 20, agent drains", queue_and_drain(demo));
    }
    if company_signed_in {
        eprintln!("demo: (a warning below that gmail rejected the access token is expected)");
        step!("sign-in disabled", sign_in_disabled(demo));
    }
    if user_signed_in {
        let shared = step!("shared mailbox, delegate", shared_mailbox(demo));
        // The step checks that the shared mailbox still sends after the user's new
        // sign-in, so it needs the shared mailbox set up.
        if shared {
            step!("Microsoft Graph route", graph_route(demo));
        }
    }
}

fn summary(steps: &[Step], locations: &[(&'static str, String)], kept: Option<&Path>) -> String {
    let mut text = String::from("mailroom demo: the whole flow against the offline sandbox\n\n");
    text.push_str(&format!(
        " #  {:<30} {:<9} {}\n",
        "step", "verified", "what happened"
    ));
    for (index, step) in steps.iter().enumerate() {
        let (verified, what, files) = match &step.outcome {
            Ok(done) => ("yes", done.what.clone(), done.files.clone()),
            Err(error) => ("NO", format!("{error:#}"), Vec::new()),
        };
        text.push_str(&format!(
            "{:>2}  {:<30} {:<9} {what}\n",
            index + 1,
            step.name,
            verified
        ));
        for file in files {
            text.push_str(&format!(
                "    {:<30} {:<9} file: {}\n",
                "",
                "",
                file.display()
            ));
        }
    }
    text.push_str("\nWhere things are:\n");
    for (label, value) in locations {
        text.push_str(&format!("  {label:<16}{value}\n"));
    }
    match kept {
        Some(dir) => text.push_str(&format!(
            "  (kept: {}; remove it when done)\n",
            dir.display()
        )),
        None => text.push_str(
            "  (the temporary files are removed on exit; run `mailroom demo --keep` to look around)\n",
        ),
    }
    let verified = steps.iter().filter(|step| step.outcome.is_ok()).count();
    text.push_str(&format!("\n{verified} of {} steps verified", steps.len()));
    text
}
