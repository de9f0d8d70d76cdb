//! `kind = "file"`: a JSON array of instances, re-read every pass.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use serde::Deserialize;
use toml::Spanned;

use super::{Inventory, SourceKind, SourceSpec, parse_instances};
use crate::BoxFuture;
use crate::config::Fragment;
use crate::model::Instance;

pub const KIND: SourceKind = SourceKind {
    name: "file",
    check,
};

/// A `kind = "file"` source's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// `path`, resolved against the config's directory.
    pub path: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    path: Option<Spanned<String>>,
}

fn check(f: &mut Fragment<'_, '_>) -> Option<Arc<dyn SourceSpec>> {
    let raw: RawFile = f.parse()?;
    let Some(path) = raw.path else {
        f.missing("path", "a file inventory needs `path = \"instances.json\"`");
        return None;
    };
    Some(Arc::new(FileConfig {
        path: f.checker.resolve_path(path.get_ref()),
    }))
}

impl SourceSpec for FileConfig {
    fn build(&self, name: &str, _timeout: Duration) -> anyhow::Result<Box<dyn Inventory>> {
        Ok(Box::new(FileInventory::new(
            name.to_string(),
            self.path.clone(),
        )))
    }
}

pub struct FileInventory {
    name: String,
    path: PathBuf,
}

impl FileInventory {
    pub fn new(name: String, path: PathBuf) -> FileInventory {
        FileInventory { name, path }
    }
}

impl Inventory for FileInventory {
    fn name(&self) -> &str {
        &self.name
    }

    fn list(&self) -> BoxFuture<'_, anyhow::Result<Vec<Instance>>> {
        Box::pin(async move {
            let text = tokio::fs::read_to_string(&self.path).await.map_err(|e| {
                anyhow!(
                    "inventory {:?}: cannot read {}: {e}",
                    self.name,
                    self.path.display()
                )
            })?;
            parse_instances(&text).map_err(|e| {
                anyhow!(
                    "inventory {:?}: {} is not a valid instance list: {e}",
                    self.name,
                    self.path.display()
                )
            })
        })
    }
}
