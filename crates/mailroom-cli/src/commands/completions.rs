//! `mailroom completions SHELL` and the hidden `mailroom man`: the shell completion
//! scripts and the manual page, generated from the clap definition so they never drift
//! from the commands (`cargo xtask dist` puts both in the release archive).

use clap::CommandFactory;
use clap_complete::Shell;
use serde_json::json;

use super::Output;
use crate::cli::Cli;

/// The name the scripts complete and the manual page documents.
const BINARY_NAME: &str = "mailroom";

/// The completion script of `shell`, for the whole command tree.
pub(crate) fn completions(shell: Shell) -> Output {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BINARY_NAME, &mut script);
    let script = String::from_utf8(script).expect("clap_complete writes UTF-8");
    Output::new(
        script.trim_end(),
        json!({ "shell": shell.to_string(), "script": script }),
    )
}

/// The manual page `mailroom.1`, as roff.
pub(crate) fn man_page() -> anyhow::Result<Output> {
    let mut roff = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut roff)?;
    let roff = String::from_utf8(roff).expect("clap_mangen writes UTF-8");
    Ok(Output::new(roff.trim_end(), json!({ "man": roff })))
}
