//! `cargo xtask install [--prefix P] [--destdir D] [--uninstall]`: builds moat with the egress
//! guard and installs it as a systemd service.
//!
//! Files laid out (`D` defaults to `/`, `P` to `/usr/local`; see docs/operations.md):
//!
//! | path | what |
//! |---|---|
//! | `D/P/bin/moat` | the binary (0755) |
//! | `D/etc/systemd/system/moat.service` | the unit, its paths pointing at `P` (0644) |
//! | `D/etc/moat/moat.toml` | the example configuration (0640), only when none exists |
//! | `D/P/share/doc/moat/*.md` | the operator documentation (0644) |
//!
//! `--uninstall` removes the binary, the unit and the documentation, and the configuration only
//! when it is still the unchanged example; state (`/var/lib/moat`: signing key, audit trail) and
//! logs are never touched.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Command-line settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) prefix: PathBuf,
    pub(crate) destdir: PathBuf,
    pub(crate) uninstall: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut o = Self {
            prefix: PathBuf::from("/usr/local"),
            destdir: PathBuf::from("/"),
            uninstall: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--prefix" => o.prefix = PathBuf::from(crate::flag_value(&mut it, a)?),
                "--destdir" => o.destdir = PathBuf::from(crate::flag_value(&mut it, a)?),
                "--uninstall" => o.uninstall = true,
                _ => bail!(
                    "install: unknown argument {a:?}; flags: --prefix P, --destdir D, --uninstall"
                ),
            }
        }
        if !o.prefix.is_absolute() {
            bail!(
                "--prefix must be an absolute path, not {}",
                o.prefix.display()
            );
        }
        Ok(o)
    }
}

/// Documentation installed for operators.
const DOCS: [&str; 8] = [
    "operations.md",
    "config.md",
    "guard.md",
    "audit.md",
    "identity.md",
    "redaction.md",
    "http.md",
    "http2.md",
];

/// `D/rest`, where `rest` is absolute.
fn under(destdir: &Path, rest: &Path) -> PathBuf {
    destdir.join(rest.strip_prefix("/").unwrap_or(rest))
}

/// Every file an install lays out, with its mode, in the order written.
pub(crate) fn files(o: &Options) -> Vec<(PathBuf, u32)> {
    let mut f = vec![
        (under(&o.destdir, &o.prefix.join("bin/moat")), 0o755),
        (
            under(&o.destdir, Path::new("/etc/systemd/system/moat.service")),
            0o644,
        ),
        (under(&o.destdir, Path::new("/etc/moat/moat.toml")), 0o640),
    ];
    for d in DOCS {
        f.push((
            under(&o.destdir, &o.prefix.join("share/doc/moat").join(d)),
            0o644,
        ));
    }
    f
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let o = Options::parse(args)?;
    if o.uninstall {
        return uninstall(&o, &crate::root());
    }
    // The guard's kernel object first, so the binary embeds it.
    crate::ebpf::build()?;
    let binary = crate::bench::build_moat()?;
    lay_out(&o, &binary, &crate::root())?;
    println!(
        "\nmoat installed. Next steps:\n\
         1. useradd --system --no-create-home --shell /usr/sbin/nologin moat\n\
         2. edit /etc/moat/moat.toml: listeners, certificates (moat cert init --dir /etc/moat/tls \
         --host <name>), upstream, policy; audit.dir = \"/var/lib/moat/audit\", \
         audit.key_dir = \"/var/lib/moat/state\"\n\
         3. {bin} check --config /etc/moat/moat.toml\n\
         4. systemctl daemon-reload && systemctl enable --now moat\n\
         5. systemctl status moat; journalctl -u moat\n\
         Uninstall: cargo xtask install --uninstall (state and audit data stay).",
        bin = o.prefix.join("bin/moat").display()
    );
    Ok(())
}

/// Copies the built binary, the unit, the example configuration (unless one exists) and the
/// documentation into place.
pub(crate) fn lay_out(o: &Options, binary: &Path, root: &Path) -> Result<()> {
    let files = files(o);
    for (path, mode) in &files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let content: Vec<u8> = match name {
            "moat" => fs::read(binary).with_context(|| format!("read {}", binary.display()))?,
            "moat.service" => {
                let unit = fs::read_to_string(root.join("config/moat.service"))?;
                unit.replace(
                    "/usr/local/bin/moat",
                    &o.prefix.join("bin/moat").display().to_string(),
                )
                .replace(
                    "/usr/local/share/doc/moat",
                    &o.prefix.join("share/doc/moat").display().to_string(),
                )
                .into_bytes()
            }
            "moat.toml" => {
                if path.exists() {
                    eprintln!("install: keeping the existing {}", path.display());
                    continue;
                }
                fs::read(root.join("config/moat.example.toml"))?
            }
            doc => fs::read(root.join("docs").join(doc))?,
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        // Write beside, then rename: an installed binary that is running is replaced, not
        // overwritten in place.
        let tmp = path.with_extension("moat-install");
        fs::write(&tmp, &content).with_context(|| format!("write {}", tmp.display()))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(*mode))?;
        fs::rename(&tmp, path).with_context(|| format!("install {}", path.display()))?;
        eprintln!("install: {}", path.display());
    }
    Ok(())
}

/// Removes what [`lay_out`] wrote, except a configuration that was changed.
pub(crate) fn uninstall(o: &Options, root: &Path) -> Result<()> {
    let example = fs::read(root.join("config/moat.example.toml")).unwrap_or_default();
    for (path, _) in files(o) {
        if !path.exists() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "moat.toml")
            && fs::read(&path).unwrap_or_default() != example
        {
            eprintln!("uninstall: keeping the edited {}", path.display());
            continue;
        }
        fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
        eprintln!("uninstall: removed {}", path.display());
    }
    let doc_dir = under(&o.destdir, &o.prefix.join("share/doc/moat"));
    let _ = fs::remove_dir(doc_dir);
    eprintln!("uninstall: state and audit data (/var/lib/moat) and logs are left in place");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file below `dir`, relative, sorted.
    fn tree(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(rel) = p.strip_prefix(dir) {
                    out.push(rel.display().to_string());
                }
            }
        }
        out.sort();
        out
    }

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("moat-install-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn lays_out_exactly_the_documented_files_and_uninstalls_them() -> Result<()> {
        let root = crate::root();
        let dest = scratch("layout");
        let fake = dest.with_extension("bin");
        fs::write(&fake, b"#!/bin/sh\necho moat\n")?;
        let o = Options::parse(&[
            "--prefix".into(),
            "/opt/moat".into(),
            "--destdir".into(),
            dest.display().to_string(),
        ])?;
        lay_out(&o, &fake, &root)?;
        let mut want = vec![
            "etc/moat/moat.toml".to_owned(),
            "etc/systemd/system/moat.service".to_owned(),
            "opt/moat/bin/moat".to_owned(),
        ];
        want.extend(DOCS.iter().map(|d| format!("opt/moat/share/doc/moat/{d}")));
        want.sort();
        assert_eq!(tree(&dest), want);
        // The table in docs/operations.md names the same places.
        let ops = fs::read_to_string(root.join("docs/operations.md"))?;
        for documented in [
            "P/bin/moat",
            "/etc/systemd/system/moat.service",
            "/etc/moat/moat.toml",
            "P/share/doc/moat/",
        ] {
            assert!(
                ops.contains(documented),
                "{documented} not in docs/operations.md"
            );
        }
        let unit = fs::read_to_string(dest.join("etc/systemd/system/moat.service"))?;
        assert!(unit.contains("ExecStart=/opt/moat/bin/moat run"), "{unit}");
        let mode = fs::metadata(dest.join("opt/moat/bin/moat"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);

        // An existing configuration is kept, and survives uninstall once edited.
        let config = dest.join("etc/moat/moat.toml");
        fs::write(&config, "# edited\n")?;
        lay_out(&o, &fake, &root)?;
        assert_eq!(fs::read_to_string(&config)?, "# edited\n");
        uninstall(&o, &root)?;
        assert_eq!(tree(&dest), vec!["etc/moat/moat.toml".to_owned()]);
        let _ = fs::remove_dir_all(&dest);
        let _ = fs::remove_file(&fake);
        Ok(())
    }

    #[test]
    fn options() -> Result<()> {
        let o = Options::parse(&[])?;
        assert_eq!(o.prefix, PathBuf::from("/usr/local"));
        assert_eq!(o.destdir, PathBuf::from("/"));
        assert!(Options::parse(&["--prefix".into(), "relative".into()]).is_err());
        assert!(Options::parse(&["--bogus".into()]).is_err());
        assert!(Options::parse(&["--uninstall".into()])?.uninstall);
        Ok(())
    }
}
