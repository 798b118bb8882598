//! A real rsyslog (Debian `rsyslog` and `rsyslog-openssl`) as the audit collector: RFC 5425
//! TLS on a loopback port, each host's messages written as received to `<host>.log`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `rsyslogd -n` with a configuration of its own; killed on drop.
pub struct Rsyslog {
    pub addr: SocketAddr,
    /// Where the per-host files are written.
    pub out: PathBuf,
    /// CA of the collector's certificate (for `audit.ship.ca_file`).
    pub ca: PathBuf,
    conf: PathBuf,
    pid_file: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// The rsyslog configuration docs/audit.md shows, with the test's paths and port.
pub fn config(dir: &Path, tls: &Path, addr: SocketAddr) -> String {
    format!(
        r#"global(
  workDirectory="{work}"
  maxMessageSize="64k"
  defaultNetstreamDriver="ossl"
  defaultNetstreamDriverCAFile="{tls}/ca.pem"
  defaultNetstreamDriverCertFile="{tls}/server.pem"
  defaultNetstreamDriverKeyFile="{tls}/server.key"
)
module(load="imtcp" streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" address="{ip}" port="{port}" ruleset="moat")
template(name="moatFile" type="string" string="{out}/%HOSTNAME%.log")
template(name="moatRaw" type="string" string="%rawmsg%\n")
ruleset(name="moat") {{
  action(type="omfile" dynaFile="moatFile" template="moatRaw" flushOnTXEnd="on")
}}
"#,
        work = dir.join("work").display(),
        tls = tls.display(),
        ip = addr.ip(),
        port = addr.port(),
        out = dir.join("collected").display(),
    )
}

impl Rsyslog {
    /// Whether rsyslogd and its OpenSSL driver are installed.
    pub fn available() -> Result<(), String> {
        let ok = Command::new("rsyslogd")
            .arg("-v")
            .output()
            .map_err(|e| format!("rsyslogd (Debian rsyslog) cannot run: {e}"))?;
        if !ok.status.success() {
            return Err("rsyslogd -v failed".into());
        }
        let driver = ["/usr/lib/x86_64-linux-gnu/rsyslog", "/usr/lib/rsyslog"]
            .iter()
            .any(|d| Path::new(d).join("lmnsd_ossl.so").exists());
        if driver {
            Ok(())
        } else {
            Err("rsyslog's OpenSSL driver (Debian rsyslog-openssl) is not installed".into())
        }
    }

    /// Writes a certificate for 127.0.0.1 with `moat cert init` and the configuration into
    /// `dir`, and starts rsyslogd on a free loopback port.
    pub fn start(dir: &Path) -> Self {
        let tls = dir.join("tls");
        let out = Command::new(crate::gateway::binary())
            .args(["cert", "init", "--dir"])
            .arg(&tls)
            .args(["--host", "127.0.0.1"])
            .output()
            .expect("moat cert init");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for d in ["work", "collected"] {
            std::fs::create_dir_all(dir.join(d)).expect("mkdir");
        }
        let addr: SocketAddr = ([127, 0, 0, 1], crate::gateway::free_port()).into();
        let conf = dir.join("rsyslog.conf");
        std::fs::write(&conf, config(dir, &tls, addr)).expect("write rsyslog.conf");
        let mut r = Self {
            addr,
            out: dir.join("collected"),
            ca: tls.join("ca.pem"),
            conf,
            pid_file: dir.join("rsyslogd.pid"),
            log: dir.join("rsyslogd.log"),
            child: None,
        };
        r.resume();
        r
    }

    /// Starts rsyslogd (again) and waits until it accepts connections.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "rsyslogd is running");
        let _ = std::fs::remove_file(&self.pid_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("rsyslog log");
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&self.conf)
            .arg("-i")
            .arg(&self.pid_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start rsyslogd");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "rsyslogd did not listen on {}:\n{}",
            self.addr,
            self.log_text()
        );
    }

    /// Stops rsyslogd (SIGTERM, as a service manager does) and waits for it.
    pub fn pause(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            for _ in 0..200 {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What rsyslogd wrote about itself.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The files it wrote, one per host.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.out)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.pause();
    }
}
