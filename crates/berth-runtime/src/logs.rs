//! Docker `json-file` log writer with size-based rotation.
//!
//! Every line a container writes becomes one JSON object per line in the log file:
//! `{"log":"line\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}`, so `docker
//! logs` semantics (`--since`, `--until`, `--tail`, `-t`) work from the file alone. A line
//! longer than [`MAX_LINE`] is split into several entries without the trailing newline (like
//! Docker's 16 KiB partial messages); a trailing partial line is written at EOF.
//!
//! Rotation: when the next entry would take the file past `max_size`, `path.(n-1)` becomes
//! `path.n`, ..., `path` becomes `path.1` and a new `path` starts; `max_file` files are kept
//! in total. Write errors (ENOSPC...) never block the container: the entry is dropped and
//! counted in [`LogWriter::dropped`].

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::LogConfig;

/// Longest log entry; longer lines are split like Docker does.
pub const MAX_LINE: usize = 16 * 1024;

/// Errors of the log writer.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("open log {0}: {1}")]
    Open(PathBuf, std::io::Error),
}

/// Coarse class of a [`LogError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogErrorKind {
    Io,
}

impl LogError {
    pub fn kind(&self) -> LogErrorKind {
        LogErrorKind::Io
    }
}

/// Which stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Appends json-file entries, splitting chunks into lines and rotating by size.
pub struct LogWriter {
    path: PathBuf,
    max_size: u64,
    max_file: u32,
    file: Option<File>,
    size: u64,
    partial: [Vec<u8>; 2],
    dropped: u64,
    /// Entries dropped since the last successful write.
    dropping: u64,
}

fn rfc3339_nano_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl LogWriter {
    /// Open (append) the log file of `cfg` (`default_path` when `cfg.path` is empty).
    pub fn open(cfg: &LogConfig, default_path: &Path) -> Result<LogWriter, LogError> {
        let path = if cfg.path.as_os_str().is_empty() {
            default_path.to_path_buf()
        } else {
            cfg.path.clone()
        };
        let file = open_append(&path).map_err(|e| LogError::Open(path.clone(), e))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter {
            path,
            max_size: cfg.max_size,
            max_file: cfg.max_file.max(1),
            file: Some(file),
            size,
            partial: [Vec::new(), Vec::new()],
            dropped: 0,
            dropping: 0,
        })
    }

    /// Path of the current log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries dropped because the file could not be written.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Feed bytes read from a stream; complete lines are written at once.
    pub fn write(&mut self, stream: Stream, data: &[u8]) {
        let idx = stream as usize;
        let mut rest = data;
        while !rest.is_empty() {
            match rest.iter().position(|b| *b == b'\n') {
                Some(pos) => {
                    let (line, tail) = rest.split_at(pos + 1);
                    rest = tail;
                    if self.partial[idx].is_empty() {
                        self.entries(stream, line);
                    } else {
                        let mut buf = std::mem::take(&mut self.partial[idx]);
                        buf.extend_from_slice(line);
                        self.entries(stream, &buf);
                    }
                }
                None => {
                    self.partial[idx].extend_from_slice(rest);
                    rest = &[];
                }
            }
            while self.partial[idx].len() >= MAX_LINE {
                let chunk: Vec<u8> = self.partial[idx].drain(..MAX_LINE).collect();
                self.entry(stream, &chunk);
            }
        }
    }

    /// Write out any partial line of `stream` (at EOF).
    pub fn flush_partial(&mut self, stream: Stream) {
        let idx = stream as usize;
        if !self.partial[idx].is_empty() {
            let buf = std::mem::take(&mut self.partial[idx]);
            self.entry(stream, &buf);
        }
    }

    fn entries(&mut self, stream: Stream, line: &[u8]) {
        for chunk in line.chunks(MAX_LINE) {
            self.entry(stream, chunk);
        }
    }

    fn entry(&mut self, stream: Stream, line: &[u8]) {
        let obj = serde_json::json!({
            "log": String::from_utf8_lossy(line),
            "stream": stream.name(),
            "time": rfc3339_nano_now(),
        });
        let mut bytes = obj.to_string().into_bytes();
        bytes.push(b'\n');
        if self.max_size > 0 && self.size > 0 && self.size + bytes.len() as u64 > self.max_size {
            self.rotate();
        }
        let ok = match self.file.as_mut() {
            Some(f) => f.write_all(&bytes).is_ok(),
            None => false,
        };
        if ok {
            self.size += bytes.len() as u64;
            if self.dropping > 0 {
                tracing::warn!(path = %self.path.display(), dropped = self.dropping, total = self.dropped, "log writes work again; entries were dropped meanwhile");
                self.dropping = 0;
            }
        } else {
            // one warning per stretch of failures: a full disk must not turn a chatty
            // container into an unbounded shim.log (on the exec root, often a tmpfs)
            // a partly written entry would corrupt the next line: cut it off
            if let Some(f) = self.file.as_ref() {
                let _ = f.set_len(self.size);
            }
            if self.dropping == 0 {
                tracing::warn!(path = %self.path.display(), "log write failed; dropping entries until writes work again");
            }
            self.dropping += 1;
            self.dropped += 1;
        }
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    fn rotate(&mut self) {
        self.file = None;
        if self.max_file <= 1 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            for n in (1..self.max_file - 1).rev() {
                let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
            }
            let _ = std::fs::rename(&self.path, self.rotated(1));
        }
        self.size = 0;
        match open_append(&self.path) {
            Ok(f) => self.file = Some(f),
            Err(e) => tracing::warn!(path = %self.path.display(), "reopen log: {e}"),
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(p: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }

    #[test]
    fn splits_lines_and_partials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("c-json.log");
        let mut w = LogWriter::open(&LogConfig::default(), &p).expect("open");
        w.write(Stream::Stdout, b"hel");
        w.write(Stream::Stderr, b"err\n");
        w.write(Stream::Stdout, b"lo\nwor");
        w.flush_partial(Stream::Stdout);
        let l = lines(&p);
        assert_eq!(l.len(), 3);
        assert_eq!(l[0]["log"], "err\n");
        assert_eq!(l[0]["stream"], "stderr");
        assert_eq!(l[1]["log"], "hello\n");
        assert_eq!(l[2]["log"], "wor");
        assert!(l[2]["time"].as_str().expect("time").ends_with('Z'));
    }

    #[test]
    fn long_lines_are_split() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("c-json.log");
        let mut w = LogWriter::open(&LogConfig::default(), &p).expect("open");
        let mut big = vec![b'x'; MAX_LINE + 10];
        big.push(b'\n');
        w.write(Stream::Stdout, &big);
        let l = lines(&p);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0]["log"].as_str().expect("log").len(), MAX_LINE);
        assert_eq!(l[1]["log"].as_str().expect("log").len(), 11);
    }

    #[test]
    fn rotates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("c-json.log");
        let cfg = LogConfig {
            path: p.clone(),
            max_size: 200,
            max_file: 3,
        };
        let mut w = LogWriter::open(&cfg, &p).expect("open");
        for i in 0..30 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes());
        }
        assert!(p.exists());
        assert!(dir.path().join("c-json.log.1").exists());
        assert!(dir.path().join("c-json.log.2").exists());
        assert!(!dir.path().join("c-json.log.3").exists());
        assert!(std::fs::metadata(&p).expect("meta").len() <= 200);
        let last = lines(&p);
        assert_eq!(last.last().expect("entry")["log"], "line 29\n");
    }
}
