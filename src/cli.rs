//! Command-line arguments to a [`Command`].

use std::path::PathBuf;

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run with a config file until SIGINT/SIGTERM.
    Run(PathBuf),
    /// Validate a config file.
    Check(PathBuf),
    /// Two built-in backends and a balancer in front of them.
    Demo,
    /// Print the version.
    Version,
    /// Print usage.
    Help,
}

/// Usage text for `--help` and argument errors.
pub const USAGE: &str = "\
lbd - HTTP/1.1 load balancer

usage:
  lbd CONFIG.toml           run until SIGINT/SIGTERM
  lbd --check CONFIG.toml   validate the file and exit
  lbd --demo                backends on 127.0.0.1:8081 and :8082, balancer on :8080,
                            admin page on :9090
  lbd --version             print the version
  lbd --help                print this help

RUST_LOG sets the log level (default: info).
";

/// Parses arguments (without the program name).
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let args: Vec<String> = args.into_iter().collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["--help" | "-h"] => Ok(Command::Help),
        ["--version" | "-V"] => Ok(Command::Version),
        ["--demo"] => Ok(Command::Demo),
        ["--check", path] => Ok(Command::Check(PathBuf::from(path))),
        [path] if !path.starts_with('-') => Ok(Command::Run(PathBuf::from(path))),
        [] => Err("missing CONFIG.toml".to_string()),
        other => Err(format!("unexpected arguments: {}", other.join(" "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let p = |a: &[&str]| parse(a.iter().map(|s| s.to_string()));
        assert_eq!(p(&["lbd.toml"]), Ok(Command::Run("lbd.toml".into())));
        assert_eq!(
            p(&["--check", "x.toml"]),
            Ok(Command::Check("x.toml".into()))
        );
        assert_eq!(p(&["--demo"]), Ok(Command::Demo));
        assert_eq!(p(&["--version"]), Ok(Command::Version));
        assert_eq!(p(&["--help"]), Ok(Command::Help));
        assert!(p(&[]).is_err());
        assert!(p(&["--bogus"]).is_err());
        assert!(p(&["a", "b"]).is_err());
    }
}
