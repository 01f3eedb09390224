//! Settings from a TOML file, the environment and flags, in rising order of
//! precedence.
//!
//! Every flag that has a `QUIVER_*` variable can also be a key of the file
//! named by `--config FILE` (or `QUIVER_CONFIG`), spelled like the flag
//! (`cache-bytes = 1073741824`, `cache_bytes` works too). The file is read
//! before the command line is parsed: each key whose variable is not set
//! becomes that variable, so the environment overrides the file and a flag
//! overrides both, and every value is checked by the same parser as its
//! flag. An unknown key, a section or an array fails at start naming the
//! key and the file.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;

use clap::parser::ValueSource;

/// Variables that came from the config file (for `--print-config`).
static FROM_FILE: OnceLock<BTreeSet<String>> = OnceLock::new();

/// Flags that may be set in the file, with their variables: every argument
/// of the command (global flags such as `--log-format`) and of every
/// subcommand that has a `QUIVER_*` variable.
fn keys(cmd: &clap::Command) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let subcommand_args = cmd.get_subcommands().flat_map(|sub| sub.get_arguments());
    {
        for arg in cmd.get_arguments().chain(subcommand_args) {
            if let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) {
                if long != "config" {
                    out.insert(long.to_string(), env.to_string_lossy().into_owned());
                }
            }
        }
    }
    out
}

/// The `--config` file named on the command line or by `QUIVER_CONFIG`.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    std::env::var_os("QUIVER_CONFIG").map(PathBuf::from)
}

/// Reads the config file, if one is named, into the environment (where no
/// variable is set already). Must run before any other thread starts.
pub fn load(cmd: &clap::Command, args: &[OsString]) -> Result<(), String> {
    let Some(path) = config_path(args) else {
        let _ = FROM_FILE.set(BTreeSet::new());
        return Ok(());
    };
    let shown = path.display();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read config file '{shown}': {e}"))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("config file '{shown}': {e}"))?;
    let known = keys(cmd);
    let mut set = BTreeSet::new();
    for (key, value) in table {
        let flag = key.replace('_', "-");
        let Some(env) = known.get(&flag) else {
            return Err(format!(
                "config file '{shown}': unknown key '{key}' (keys are the flags of `quiver <command> --help` that have a QUIVER_* variable, e.g. cache-bytes, listen, store)"
            ));
        };
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Datetime(d) => d.to_string(),
            toml::Value::Array(_) | toml::Value::Table(_) => {
                return Err(format!(
                    "config file '{shown}': key '{key}' must be a single value (a string, number or boolean)"
                ))
            }
        };
        if std::env::var_os(env).is_none() {
            // Before any thread exists (see `main`).
            std::env::set_var(env, text);
            set.insert(env.clone());
        }
    }
    let _ = FROM_FILE.set(set);
    Ok(())
}

/// Where a setting's value came from.
fn source(matches: &clap::ArgMatches, arg: &clap::Arg) -> &'static str {
    match matches.value_source(arg.get_id().as_str()) {
        Some(ValueSource::CommandLine) => "flag",
        Some(ValueSource::EnvVariable) => {
            let from_file = arg
                .get_env()
                .zip(FROM_FILE.get())
                .is_some_and(|(env, set)| set.contains(&*env.to_string_lossy()));
            if from_file {
                "config file"
            } else {
                "environment"
            }
        }
        Some(ValueSource::DefaultValue) => "default",
        _ => "unset",
    }
}

/// The effective settings of a subcommand as TOML (usable as `--config`),
/// each with where it came from; passwords are redacted.
pub fn render(cmd: &clap::Command, matches: &clap::ArgMatches) -> String {
    let mut out = String::new();
    for arg in cmd.get_arguments() {
        let (Some(long), Some(_)) = (arg.get_long(), arg.get_env()) else {
            continue;
        };
        if long == "config" {
            continue;
        }
        let id = arg.get_id().as_str();
        let from = source(matches, arg);
        let raw: Option<Vec<String>> = matches
            .get_raw(id)
            .map(|vs| vs.map(|v| v.to_string_lossy().into_owned()).collect());
        let line = match raw {
            None => format!("# {long} = (not set)"),
            Some(_) if long.contains("password") => format!("{long} = \"<redacted>\""),
            Some(vs) => {
                let v = vs.join(",");
                if v.parse::<i64>().is_ok() || v == "true" || v == "false" {
                    format!("{long} = {v}")
                } else {
                    format!("{long} = {}", toml::Value::String(v))
                }
            }
        };
        out.push_str(&format!("{line:<60} # {from}\n"));
    }
    out
}
