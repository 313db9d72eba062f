//! The web configuration in force, re-read when its files change.
//!
//! Before each new connection the server asks [`LiveSettings::current`], which compares the
//! files' identity (device, inode, size, modification and change times: a few `stat` calls) with
//! what it last loaded. When they differ it reads the file again: a good file takes effect for
//! that connection (a rotated certificate is served at once), a bad one is logged once, with the
//! field at fault, and the last good configuration stays in force. SIGHUP forces a re-read
//! ([`LiveSettings::reload`]). Kubernetes updates a mounted Secret by swapping a symlink, which
//! `stat` follows, so that is seen as a change too.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::config_file::{self, FileError, Settings};

/// What identifies a version of a file without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Option<(u64, u64, u64, i64, i64, i64, i64)>);

impl Stamp {
    fn of(path: &Path) -> Self {
        use std::os::unix::fs::MetadataExt;
        Stamp(std::fs::metadata(path).ok().map(|m| {
            (
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            )
        }))
    }
}

fn stamps(paths: &[PathBuf]) -> Vec<Stamp> {
    paths.iter().map(|p| Stamp::of(p)).collect()
}

struct State {
    settings: Arc<Settings>,
    /// The files last read (good or bad) and their stamps then.
    inputs: Vec<PathBuf>,
    stamps: Vec<Stamp>,
}

/// The settings of `--web.config.file` (or plain HTTP without one), kept current.
pub struct LiveSettings {
    path: Option<PathBuf>,
    state: Mutex<State>,
}

impl LiveSettings {
    /// Reads the file once; an error here stops start-up.
    pub fn load(path: Option<&Path>) -> Result<Self, FileError> {
        let settings = match path {
            Some(p) => config_file::load(p)?,
            None => Settings::plain(),
        };
        let inputs = settings.inputs.clone();
        Ok(Self {
            path: path.map(Path::to_path_buf),
            state: Mutex::new(State {
                stamps: stamps(&inputs),
                inputs,
                settings: Arc::new(settings),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The settings for a new connection, re-read first if a file changed since the last read.
    pub fn current(&self) -> Arc<Settings> {
        if self.path.is_some() {
            let changed = {
                let s = self.lock();
                stamps(&s.inputs) != s.stamps
            };
            if changed {
                self.reload("a file changed");
            }
        }
        self.lock().settings.clone()
    }

    /// Reads the file again (SIGHUP, or a change seen by [`Self::current`]); keeps the last good
    /// settings when the new ones are bad. Returns whether the new file took effect.
    pub fn reload(&self, why: &str) -> bool {
        let Some(path) = &self.path else {
            tracing::info!(why, "no --web.config.file to re-read");
            return false;
        };
        // Stamp before reading: a write that lands while we read is seen next time.
        let mut state = self.lock();
        let before = stamps(&state.inputs);
        match config_file::load(path) {
            Ok(settings) => {
                tracing::info!(file = %path.display(), why, settings = %settings.describe(), "web configuration reloaded");
                state.stamps = stamps(&settings.inputs);
                state.inputs = settings.inputs.clone();
                state.settings = Arc::new(settings);
                true
            }
            Err(e) => {
                tracing::error!(file = %path.display(), why, field = %e.field, error = %e.problem, "web configuration not reloaded: keeping the last good one");
                // Not again until something changes.
                state.stamps = before;
                false
            }
        }
    }
}
