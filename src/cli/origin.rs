//! Where a flag's value came from, for error messages. clap names the flag even when the value
//! came from its environment twin; someone who set `IMDS_EXPORTER_IMDS_INTERVAL=abc` in a
//! DaemonSet or a unit file looks for that variable, and may never have typed the flag. Both kinds
//! of bad value are reported under the variable's name when it supplied them: one that does not
//! parse (clap's error, rewritten by [`parse`]) and one that parses but makes no sense (a
//! [`ConfigError`], rewritten by [`explain`]).

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

use crate::config::ConfigError;

/// Parses `args` (the program name first) with `command` into matches that say where each value
/// came from. A value that does not parse is clap's error; when the value came from an
/// environment twin, the error names the variable, and a tip names the flag.
pub fn parse(mut command: Command, args: Vec<OsString>) -> Result<ArgMatches, clap::Error> {
    if !std::ptr::eq(invoked(&command, &args), &command) {
        // A subcommand reads its own twins only: clap would also parse the exporter's, and an
        // exporter variable set for a DaemonSet must not stop a `check` run in its pod.
        command = command.mut_args(|a| a.env(None::<&str>));
    }
    // Built, so that an argument displays as clap shows it in errors (`--imds.interval <DURATION>`).
    command.build();
    command
        .clone()
        .try_get_matches_from(&args)
        .map_err(|e| name_the_variable(e, &command, &args))
}

fn name_the_variable(mut err: clap::Error, command: &Command, args: &[OsString]) -> clap::Error {
    if !matches!(
        err.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return err;
    }
    let Some(ContextValue::String(shown)) = err.get(ContextKind::InvalidArg).cloned() else {
        return err;
    };
    // The command line alone fails the same way: the value is the user's flag. (clap reads an
    // environment twin only for a flag absent from the command line, after the command line.)
    if let Err(alone) = ignore_environment(command.clone()).try_get_matches_from(args) {
        let same = |kind| alone.get(kind) == err.get(kind);
        if alone.kind() == err.kind()
            && same(ContextKind::InvalidArg)
            && same(ContextKind::InvalidValue)
        {
            return err;
        }
    }
    let Some(variable) = invoked(command, args)
        .get_arguments()
        .find(|a| a.to_string() == shown)
        .and_then(|a| a.get_env())
        .map(|v| v.to_string_lossy().into_owned())
    else {
        return err;
    };
    let tip = format!("{variable} sets '{shown}' when the flag is not given");
    err.insert(ContextKind::InvalidArg, ContextValue::String(variable));
    err.insert(
        ContextKind::Suggested,
        ContextValue::StyledStrs(vec![tip.into()]),
    );
    err
}

/// `command` and its subcommands without their environment twins.
fn ignore_environment(command: Command) -> Command {
    command
        .mut_args(|a| a.env(None::<&str>))
        .mut_subcommands(ignore_environment)
}

/// The subcommand `args` invoke, or the root: flags and subcommands conflict, so a subcommand is
/// always the first argument.
fn invoked<'a>(command: &'a Command, args: &[OsString]) -> &'a Command {
    args.get(1)
        .and_then(|a| a.to_str())
        .and_then(|name| command.find_subcommand(name))
        .unwrap_or(command)
}

/// `err` as a message, naming the environment variable its value came from, if it came from one.
/// `command` is the one `matches` came from.
pub fn explain(err: ConfigError, command: &Command, matches: &ArgMatches) -> String {
    let (command, matches) = match matches.subcommand() {
        Some((name, sub)) => match command.find_subcommand(name) {
            Some(command) => (command, sub),
            None => return err.to_string(),
        },
        None => (command, matches),
    };
    let variable = command
        .get_arguments()
        .find(|a| a.get_long() == Some(err.setting))
        .filter(|a| matches.value_source(a.get_id().as_str()) == Some(ValueSource::EnvVariable))
        .and_then(|a| a.get_env());
    match variable {
        Some(variable) => format!(
            "{err} (the value comes from {}, its environment twin)",
            variable.to_string_lossy()
        ),
        None => err.to_string(),
    }
}
