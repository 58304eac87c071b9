//! Loading a configuration into a registry: check everything, then swap.

use std::path::Path;
use std::sync::Arc;

use super::file::{self, Format};
use super::{ConfigErrors, ConfigFile};
use crate::error::ConfigError;
use crate::registry::Registry;

impl Registry {
    /// Load (or reload) the configuration in `text`.
    ///
    /// The whole text is checked first; if anything is wrong nothing
    /// changes and every mistake is returned. Otherwise the file's settings
    /// replace the previously loaded ones as one step: see
    /// [the `config` module](crate::config) for what is kept and what is
    /// replaced.
    ///
    /// ```
    /// use buttress::{config::Format, Registry};
    ///
    /// let registry = Registry::new();
    /// registry
    ///     .load_str("[providers.maps]\ntimeout = \"800ms\"\nbreaker = { open_for = \"1m\" }\n", Format::Toml)
    ///     .unwrap();
    /// let errors = registry
    ///     .load_str("[providers.maps]\nbreaker = { failure_rate = 1.5 }\n", Format::Toml)
    ///     .unwrap_err();
    /// assert_eq!(
    ///     errors.to_string(),
    ///     "providers.maps.breaker.failure_rate: must be in (0, 1], got 1.5: it is the fraction of calls in the window"
    /// );
    /// ```
    ///
    /// # Errors
    /// [`ConfigErrors`]: a syntax error with its line and column, or every
    /// invalid key and value with its path.
    pub fn load_str(&self, text: &str, format: Format) -> Result<(), ConfigErrors> {
        let value = file::parse(text, format)?;
        let file = ConfigFile::from_value(&value)?;
        self.install_file(file);
        Ok(())
    }

    /// Load (or reload) the configuration file at `path`; its format is
    /// named by its extension (`.toml`, `.yaml`, `.yml`, `.json`). Call it
    /// again, for example on `SIGHUP`, to apply an edited file.
    ///
    /// # Errors
    /// [`ConfigErrors`]: the file cannot be read or has no known extension
    /// (the path is the file's), or as [`Registry::load_str`].
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<(), ConfigErrors> {
        let path = path.as_ref();
        let Some(format) = Format::from_path(path) else {
            return Err(ConfigError::new(
                path.display().to_string(),
                "unknown format: name the file *.toml, *.yaml, *.yml or *.json, or read it yourself and call `Registry::load_str`",
            )
            .into());
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                path.display().to_string(),
                format!("cannot read the file: {e}"),
            )
        })?;
        self.load_str(&text, format)
    }

    /// Reload the file at `path` whenever its content changes, checking
    /// every `interval`, on a task of the current tokio runtime; stop by
    /// aborting the returned handle. The file is loaded once before this
    /// returns, so a broken file is reported at startup. Later mistakes (a
    /// bad edit, a file briefly missing while an editor saves it) are logged
    /// with `tracing` at `error` level and leave the last good settings in
    /// force; the next good edit is picked up.
    ///
    /// The file is small and read with blocking I/O on the runtime's
    /// thread; for very short intervals, reload from your own task with
    /// [`Registry::load_file`] instead.
    ///
    /// # Errors
    /// As [`Registry::load_file`], for the first load (then no task is
    /// started).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn watch_file(
        &'static self,
        path: impl AsRef<Path>,
        interval: std::time::Duration,
    ) -> Result<tokio::task::JoinHandle<()>, ConfigErrors> {
        let path = path.as_ref().to_path_buf();
        self.load_file(&path)?;
        let mut last = std::fs::read(&path).ok();
        Ok(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await; // the first tick is immediate
            loop {
                ticks.tick().await;
                let current = std::fs::read(&path).ok();
                if current.is_none() || current == last {
                    continue;
                }
                last = current;
                match self.load_file(&path) {
                    Ok(()) => tracing::info!(path = %path.display(), "configuration file reloaded"),
                    Err(errors) => tracing::error!(
                        path = %path.display(),
                        %errors,
                        "configuration file not reloaded; the previous settings stay in force"
                    ),
                }
            }
        }))
    }

    fn install_file(&self, file: ConfigFile) {
        self.install(Arc::new(file));
        tracing::info!("configuration loaded");
    }
}
