//! Loading a configuration into a registry: check everything, then swap.

use std::path::Path;
use std::sync::{Arc, PoisonError};

use super::file::{self, Format};
use super::{ConfigErrors, ConfigFile};
use crate::error::ConfigError;
use crate::registry::{Provider, Registry};

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
    ///     "providers.maps.breaker.failure_rate: must be in (0, 1], got 1.5"
    /// );
    /// ```
    ///
    /// # Errors
    /// [`ConfigErrors`]: a syntax error with its line and column, or every
    /// invalid key and value with its path.
    pub fn load_str(&self, text: &str, format: Format) -> Result<(), ConfigErrors> {
        let value = file::parse(text, format)?;
        let file = ConfigFile::from_value(&value)?;
        self.install(file);
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

    fn install(&self, file: ConfigFile) {
        // One load at a time, so that two reloads cannot interleave their
        // swaps.
        let _loading = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
        {
            let mut providers = self.providers.write();
            for (name, section) in &file.providers {
                let next = match providers.get(name.as_str()) {
                    Some(old) if *old.config() == section.shared => continue,
                    Some(old) => Provider::reconfigured(old, section.shared),
                    None => Provider::new(Arc::from(name.as_str()), section.shared),
                };
                providers.insert(Arc::clone(next.name()), Arc::new(next));
            }
            *self.file.write() = Some(Arc::new(file));
        }
        self.bump();
        tracing::info!("configuration loaded");
    }
}
