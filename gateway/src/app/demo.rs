//! `moat demo`: a demo model and the gateway in front of it, with commands to try.

use std::process::ExitCode;

use super::{run_runtime, run_with};
use crate::config::Config;

/// Starts the demo model and the gateway on 127.0.0.1 (`port`, or a free one if it is taken).
pub fn run(port: u16) -> ExitCode {
    crate::telemetry::init(crate::config::LogFormat::Text, "info");
    run_runtime(0, demo(port))
}

/// Runs the demo until Ctrl-C, then removes its certificates, configuration and audit trail.
async fn demo(port: u16) -> anyhow::Result<()> {
    let model = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let model_addr = model.local_addr()?;
    tokio::spawn(crate::demo::serve_model(model));

    // Take the requested port if free, else any free port.
    let probe = match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(_) => std::net::TcpListener::bind("127.0.0.1:0")?,
    };
    let gateway_addr = probe.local_addr()?;
    drop(probe);

    let dir = std::env::temp_dir().join(format!("moat-demo-{}", std::process::id()));
    let setup = crate::demo::prepare(&dir, gateway_addr, model_addr)?;
    let config = Config::load(&setup.config_file)?;
    let banner = || {
        println!(
            "moat demo: gateway on https://localhost:{} -> demo model on {model_addr}",
            gateway_addr.port()
        );
        println!(
            "certificates, configuration and audit trail in {}\n",
            setup.dir.display()
        );
        println!("Try:\n{}", crate::demo::curl_commands(&setup, gateway_addr));
        println!("Ctrl-C stops the gateway and the demo model.");
    };
    run_with(config, setup.config_file.clone(), banner).await?;
    let _ = std::fs::remove_dir_all(&setup.dir);
    Ok(())
}
