//! The dns-agent binary: flags → configuration → agent, until SIGINT or SIGTERM (SIGHUP reloads).

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;
use dns_agent::{app, cli};
use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("dns-agent: {}", cli::one_line(&e));
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("dns-agent: {e}");
            return ExitCode::from(2);
        }
    };
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dns-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Every error message of the library already names its cause, so only the outer one is printed.
fn run(config: cli::Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Registered before anything is attached, so a signal during startup still stops cleanly.
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let app = app::App::start(config).await?;
        loop {
            tokio::select! {
                _ = sigint.recv() => {
                    log::info!("SIGINT received, shutting down");
                    break;
                }
                _ = sigterm.recv() => {
                    log::info!("SIGTERM received, shutting down");
                    break;
                }
                _ = sighup.recv() => match app.reload() {
                    Ok(true) => log::info!("SIGHUP: snapshot reloaded"),
                    Ok(false) => log::info!("SIGHUP: snapshot unchanged"),
                    Err(e) => log::error!("SIGHUP: {e}; still serving the previous records"),
                },
            }
        }
        app.stop().await;
        Ok(())
    })
}
