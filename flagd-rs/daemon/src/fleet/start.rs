//! Opening fleet mode at start-up: the etcd client from `--store*`, the journal in etcd (or,
//! when etcd does not answer, the state cached in `--state-dir` while the journal keeps trying),
//! and the authority over it, following what the other replicas append.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};

use super::config::StoreSettings;
use super::etcd::{EtcdClient, EtcdTls};
use super::journal::{EtcdJournal, EtcdJournalOptions, Fencing};
use super::url::StoreUrl;
use crate::authority::{Authority, JournalError, Replay, StateCache};
use crate::store::Store;

/// What fleet mode opened.
#[derive(Debug)]
pub struct Opened {
    /// The authority over the journal in etcd.
    pub authority: Arc<Authority>,
    /// The etcd client (for the replica registry and the controller election).
    pub client: EtcdClient,
    /// The key prefix (`/flagd-rs/prod`).
    pub prefix: String,
    /// The journal's fence of rollout records, set by the controller election.
    pub fencing: Arc<Fencing>,
    /// The controller's leader key.
    pub controller_key: String,
}

/// The etcd client `settings` describe.
pub fn client(settings: &StoreSettings) -> anyhow::Result<(EtcdClient, StoreUrl)> {
    let url = StoreUrl::parse(&settings.url)
        .map_err(|e| anyhow::anyhow!("invalid --store `{}`: {e}", settings.url))?;
    let mut config = url.config();
    if settings.ca.is_some() || settings.identity.is_some() {
        let (cert, key) = match &settings.identity {
            Some((cert, key)) => (Some(cert.as_path()), Some(key.as_path())),
            None => (None, None),
        };
        config.tls = Some(EtcdTls::from_files(settings.ca.as_deref(), cert, key)?);
    }
    if let Some((user, password)) = &settings.credentials {
        config.user = Some(user.clone());
        config.password = Some(password.clone());
    }
    let client = EtcdClient::connect(config).context("configuring the etcd client")?;
    Ok((client, url))
}

/// Opens the shared authority: reads the journal from etcd, or starts from the cache in
/// `state_dir` when etcd does not answer. Fails when another process holds `state_dir`, when
/// etcd holds something that is not a journal, or when etcd does not answer and the cache is
/// damaged (serving no overrides at all would silently undo every change).
pub async fn open(
    settings: &StoreSettings,
    state_dir: &Path,
    store: Arc<Store>,
) -> anyhow::Result<Opened> {
    let (client, url) = client(settings)?;
    let cache = StateCache::locked(state_dir)
        .with_context(|| format!("locking the state directory {}", state_dir.display()))?;
    let cached = cache.load();
    let runtime = tokio::runtime::Handle::current();
    let opening = {
        let (client, prefix, runtime) = (client.clone(), url.prefix.clone(), runtime.clone());
        tokio::task::spawn_blocking(move || EtcdJournal::open(client, &prefix, runtime))
            .await
            .context("opening the journal in etcd")?
    };
    let (journal, replay) = match opening {
        Ok(opened) => {
            if let Err(e) = &cached {
                tracing::warn!(error = %e, "the state cache does not read; it is rewritten from etcd");
            }
            opened
        }
        Err(JournalError::Unavailable(why)) => {
            let cached = match cached {
                Ok(cached) => cached,
                Err(e) => bail!(
                    "etcd does not answer ({why}) and the cached state does not read ({e}): \
                     refusing to serve without the overrides; start again once etcd answers, \
                     or remove {} to start without them",
                    cache.path().display()
                ),
            };
            match &cached {
                Some(s) => tracing::warn!(%why, revision = s.revision,
                    "etcd does not answer: serving the cached state until it does"),
                None => tracing::warn!(%why,
                    "etcd does not answer and nothing is cached: serving without overrides until it does"),
            }
            let replay = Replay {
                snapshot: cached,
                records: Vec::new(),
            };
            let journal = EtcdJournal::open_cached(
                client.clone(),
                &url.prefix,
                runtime,
                EtcdJournalOptions::default(),
                &replay,
            )?;
            (journal, replay)
        }
        Err(e) => {
            return Err(e).with_context(|| format!("opening the journal under {}", url.prefix));
        }
    };
    let fencing = journal.fencing();
    let controller_key = journal.keys().controller().to_owned();
    let authority = Authority::with_shared_journal(Box::new(journal), replay, store, cache);
    authority.follow();
    tracing::info!(
        store = %url.endpoints.join(","),
        prefix = %url.prefix,
        revision = authority.head(),
        replica = %settings.replica_id,
        "fleet mode: sharing the authority through etcd"
    );
    Ok(Opened {
        authority,
        client,
        prefix: url.prefix,
        fencing,
        controller_key,
    })
}
