//! `moat audit tail`: prints the last records, then each new one as the writer appends it,
//! across segment rotations.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{segments, AuditError};

/// Prints the last `last` records, then follows until `stop()` returns true, calling `emit` with
/// each whole line (without its newline).
pub fn follow(
    dir: &Path,
    last: usize,
    mut emit: impl FnMut(&[u8]),
    stop: impl Fn() -> bool,
) -> Result<(), AuditError> {
    let mut current: Option<(PathBuf, u64)> = None;
    // Backlog: the last `last` lines of the newest segments.
    let segs = segments(dir)?;
    let mut backlog: Vec<Vec<u8>> = Vec::new();
    for seg in segs.iter().rev() {
        let data = std::fs::read(seg).map_err(super::io_err(seg))?;
        let data = super::written(&data);
        let whole = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if current.is_none() {
            current = Some((seg.clone(), whole as u64));
        }
        for line in data[..whole]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .rev()
        {
            if backlog.len() == last {
                break;
            }
            backlog.push(line.to_vec());
        }
        if backlog.len() == last {
            break;
        }
    }
    for line in backlog.iter().rev() {
        emit(line);
    }
    let mut partial = Vec::new();
    while !stop() {
        let segs = segments(dir)?;
        let Some((path, offset)) = current
            .clone()
            .or_else(|| segs.first().map(|p| (p.clone(), 0)))
        else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let mut f = std::fs::File::open(&path).map_err(super::io_err(&path))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(super::io_err(&path))?;
        let mut fresh = Vec::new();
        f.read_to_end(&mut fresh).map_err(super::io_err(&path))?;
        // Only what was written: the zero-filled space ahead of the records is not read.
        fresh.truncate(super::written(&fresh).len());
        let new_offset = offset + fresh.len() as u64;
        partial.extend_from_slice(&fresh);
        while let Some(i) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=i).collect();
            emit(&line[..line.len() - 1]);
        }
        // Move on to the next segment once this one has nothing new and a newer one exists.
        let next = segs.iter().find(|s| **s > path).cloned();
        current = match next {
            Some(n) if fresh.is_empty() && partial.is_empty() => Some((n, 0)),
            _ => Some((path, new_offset)),
        };
        if fresh.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}
