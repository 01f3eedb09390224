//! Opening an object store from a URL: a local directory, `s3://`,
//! `gs://` or `az://` (credentials from the environment), with quiver's
//! own retries in place of the clients'.

use crate::error::{Error, Result};
use object_store::ObjectStore;
use std::sync::Arc;
use url::Url;

/// Builds the object store for a store URL, rooted at the URL's prefix.
pub fn open_object_store(url: &str) -> Result<Arc<dyn ObjectStore>> {
    use object_store::prefix::PrefixStore;
    let parsed = match Url::parse(url) {
        Ok(u) if u.scheme().len() > 1 => u,
        // A plain path (or a Windows drive letter) is a local directory.
        _ => return open_local(std::path::Path::new(url)),
    };
    let prefix = parsed.path().trim_matches('/').to_string();
    let with_prefix = |s: Arc<dyn ObjectStore>| -> Arc<dyn ObjectStore> {
        if prefix.is_empty() {
            s
        } else {
            Arc::new(PrefixStore::new(s, prefix.as_str()))
        }
    };
    let cfg = |e: object_store::Error| Error::Config(format!("store '{url}': {e}"));
    match parsed.scheme() {
        "file" => {
            let path = parsed
                .to_file_path()
                .map_err(|_| Error::Config(format!("store '{url}': not a local file path")))?;
            open_local(&path)
        }
        "memory" => Ok(Arc::new(object_store::memory::InMemory::new())),
        "s3" | "s3a" => {
            let s = object_store::aws::AmazonS3Builder::from_env()
                .with_url(url)
                .with_retry(no_client_retries())
                .build()
                .map_err(cfg)?;
            Ok(with_prefix(Arc::new(s)))
        }
        "gs" => {
            let s = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url)
                .with_retry(no_client_retries())
                .build()
                .map_err(cfg)?;
            Ok(with_prefix(Arc::new(s)))
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let s = object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url)
                .with_retry(no_client_retries())
                .build()
                .map_err(cfg)?;
            Ok(with_prefix(Arc::new(s)))
        }
        other => Err(Error::Config(format!(
            "store '{url}': unsupported scheme '{other}' (use a path, file://, s3://, gs://, az:// or memory://)"
        ))),
    }
}

/// quiver's [`crate::storage::io::retry::RetryStore`] owns retries; the cloud clients'
/// own would multiply its attempts.
fn no_client_retries() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 0,
        ..Default::default()
    }
}

fn open_local(path: &std::path::Path) -> Result<Arc<dyn ObjectStore>> {
    std::fs::create_dir_all(path).map_err(|e| {
        Error::Config(format!(
            "cannot create data directory '{}': {e}",
            path.display()
        ))
    })?;
    let s = object_store::local::LocalFileSystem::new_with_prefix(path)
        .map_err(|e| Error::Config(format!("data directory '{}': {e}", path.display())))?;
    Ok(Arc::new(s))
}

/// Whether an error was caused by an object the store does not have.
pub(crate) fn is_not_found(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(object_store::Error::NotFound { .. }) =
            err.downcast_ref::<object_store::Error>()
        {
            return true;
        }
        cur = err.source();
    }
    false
}
