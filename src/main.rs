//! The `lbd` binary: parse arguments, set up logging, run the library, map errors to
//! exit codes.

use std::process::ExitCode;

use lbd::cli::{self, Command};
use lbd::config::{AdminConfig, RawConfig};
use lbd::{Config, Server};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let command = match cli::parse(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("lbd: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("lbd {}", lbd::VERSION);
            ExitCode::SUCCESS
        }
        Command::Check(path) => match Config::load(&path) {
            Ok(config) => {
                for warning in config.warnings() {
                    eprintln!("lbd: {}: warning: {warning}", path.display());
                }
                println!("config ok");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("lbd: {}: {e}", path.display());
                ExitCode::FAILURE
            }
        },
        Command::Run(path) => match Config::load(&path) {
            Ok(config) => run(config, Some(&path)),
            Err(e) => {
                eprintln!("lbd: {}: {e}", path.display());
                ExitCode::FAILURE
            }
        },
        Command::Demo => demo(),
    }
}

/// Runs until SIGINT/SIGTERM, then shuts down gracefully; a second signal exits at once.
fn run(config: Config, path: Option<&std::path::Path>) -> ExitCode {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    // Registered before the workers start, so no signal finds the default handler.
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("lbd: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = match path {
        Some(path) => Server::start_from_file(config, path),
        None => Server::start(config),
    };
    let server = match started {
        Ok(server) => server,
        Err(e) => {
            eprintln!("lbd: {e}");
            return ExitCode::FAILURE;
        }
    };
    for signal in signals.forever() {
        if signal == SIGHUP {
            // Errors are logged and counted by the reload itself; the old config stays.
            let _ = server.reload();
            continue;
        }
        log::info!("signal={signal} received");
        break;
    }
    server.shutdown();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            log::warn!("second signal: exiting without waiting");
            std::process::exit(1);
        }
    });
    server.join();
    log::info!("stopped");
    ExitCode::SUCCESS
}

/// The demo's admin listener.
const DEMO_ADMIN: ([u8; 4], u16) = ([127, 0, 0, 1], 9090);

/// `lbd --demo`: two built-in backends, the balancer on :8080 and the admin listener on
/// :9090, in one command.
fn demo() -> ExitCode {
    let mut backends = Vec::new();
    for port in [8081, 8082] {
        match lbd::demo::spawn_backend(([127, 0, 0, 1], port).into()) {
            Ok(addr) => backends.push(addr),
            Err(e) => {
                eprintln!("lbd: demo backend on port {port}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut raw = RawConfig::new(([127, 0, 0, 1], 8080).into(), &backends);
    raw.admin = Some(AdminConfig {
        listen: DEMO_ADMIN.into(),
    });
    let config = match raw.validate() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("lbd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let admin = std::net::SocketAddr::from(DEMO_ADMIN);
    println!("demo: try  for i in 1 2 3 4; do curl -s localhost:8080/; done");
    println!("demo: admin page http://{admin}/ (metrics at /metrics)");
    run(config, None)
}
