//! `kind = "file"`: a JSON array of instances, re-read every pass.

use std::path::PathBuf;

use anyhow::anyhow;

use super::{Inventory, parse_instances};
use crate::BoxFuture;
use crate::model::Instance;

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
