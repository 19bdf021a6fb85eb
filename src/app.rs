//! The application object: configuration, store, CA, clock and admin token, shared by every
//! request. [`App::open`] prepares the data directory on first start and reuses it afterwards.

use std::sync::Arc;

use crate::ca::Ca;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::pki::{self, Pki, PkiError};
use crate::store::pg::{PgOptions, PgStore};
use crate::store::{Store, StoreError};

/// Everything a request handler needs.
pub struct App {
    /// Validated configuration.
    pub cfg: Config,
    /// Persistent state.
    pub store: Arc<dyn Store>,
    /// The enrollment CA.
    pub ca: Ca,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// The admin bootstrap bearer token.
    pub admin_token: String,
    /// TLS server certificate chain and key.
    pub tls: TlsMaterial,
    /// Management throttle, when `management_rate` is set.
    pub throttle: Option<crate::http::throttle::Throttle>,
    /// Recent successful password checks (one argon2id per enrollment, not two).
    pub password_cache: crate::auth::VerifyCache,
    /// The global bound on concurrent password work (argon2id).
    pub password_work: crate::password_work::PasswordWork,
    /// Federated login tokens, Entra keys, terms of use.
    pub federation: crate::federation::Federation,
    /// This process's id among the nodes sharing a store (job leases name it).
    pub node_id: String,
    /// Prometheus metrics (`GET /metrics`); `store` records into it.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The results webhook, when `--webhook-url` is set (its deliverer runs with the server).
    pub webhook: Option<Arc<crate::webhook::Webhook>>,
    /// The Microsoft tenant integration's runtime (HTTPS client, cached token, worker wake-up).
    pub tenant: Arc<crate::tenant::Runtime>,
    /// Bounds on console sign-in attempts (per node).
    pub ui_sign_in: crate::ui::session::SignInLimiter,
    /// Signs the app download URLs handed to devices ([`crate::apps::token`]).
    pub app_urls: crate::apps::token::Signer,
    /// Refused enrollment requests not yet written ([`crate::mdm::refusals`]).
    pub refusals: crate::mdm::refusals::Recorder,
    /// Which devices are traced (device traces), cached from the store.
    pub tracer: crate::trace::Tracer,
}

/// The TLS listener's certificate chain and key.
pub struct TlsMaterial {
    /// Leaf first.
    pub chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Private key.
    pub key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Start-up failure.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Key material could not be prepared.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The federation state (login-token key, JWKS file, terms file) could not be loaded.
    #[error(transparent)]
    Federation(#[from] crate::federation::FederationError),
    /// The webhook's secret or CA file could not be read.
    #[error("webhook: {0}")]
    Webhook(String),
}

impl App {
    /// Opens the data directory named by `cfg` (creating store, CA, TLS certificate and admin
    /// token on first start) with the system clock. `env_token` is `WINMDM_ADMIN_TOKEN`.
    pub fn open(cfg: Config, env_token: Option<String>) -> Result<App, AppError> {
        Self::open_with_clock(cfg, env_token, Arc::new(SystemClock))
    }

    /// As [`App::open`], with an injected clock.
    pub fn open_with_clock(
        cfg: Config,
        env_token: Option<String>,
        clock: Arc<dyn Clock>,
    ) -> Result<App, AppError> {
        let Pki {
            ca,
            tls_chain,
            tls_key,
        } = pki::load_or_create(&cfg, clock.as_ref())?;
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let backend: Arc<dyn Store> = if let Some(url) = &cfg.database_url {
            tracing::info!(database = %url, "store: PostgreSQL");
            Arc::new(PgStore::connect(url.expose(), &PgOptions::default())?)
        } else {
            let redb = crate::store::embedded::open(&cfg.data_dir, cfg.store_cache_bytes)?;
            metrics.watch_commits(redb.clone());
            Arc::new(redb)
        };
        let store: Arc<dyn Store> =
            Arc::new(crate::metrics::MeteredStore::new(backend, metrics.clone()));
        crate::owner::migrate_once(store.as_ref(), clock.now_unix())?;
        let (admin_token, token_file) = pki::admin_token(&cfg.data_dir, env_token)?;
        if let Some(path) = token_file {
            tracing::info!(path = %path.display(), "admin API token is in this file (mode 0600); set WINMDM_ADMIN_TOKEN to choose your own");
        }
        let federation = crate::federation::Federation::open(&cfg, clock.clone())?;
        let app_urls = crate::apps::token::Signer::load_or_create(&cfg.data_dir)?;
        let webhook = match &cfg.webhook {
            Some(w) => Some(Arc::new(
                crate::webhook::Webhook::open(w).map_err(AppError::Webhook)?,
            )),
            None => None,
        };
        // Events are recorded (in the changes' own transactions) while a webhook is set.
        let was = crate::store::outbox::is_enabled(store.records())?;
        if was != webhook.is_some() {
            crate::store::outbox::set_enabled(store.records(), webhook.is_some())?;
            if was {
                tracing::warn!("no --webhook-url: webhook events are no longer recorded (set the same --webhook-url on every node sharing this store)");
            }
        }
        let throttle = (cfg.management_rate > 0).then(|| {
            crate::http::throttle::Throttle::new(cfg.management_rate, cfg.management_rate)
        });
        let tracer = crate::trace::Tracer::new();
        tracer.load(store.records())?;
        Ok(App {
            tracer,
            password_cache: crate::auth::VerifyCache::new(),
            password_work: crate::password_work::PasswordWork::new(
                cfg.password_workers,
                cfg.password_wait,
            ),
            federation,
            node_id: crate::clock::random_hex(8),
            metrics,
            webhook,
            tenant: Arc::new(crate::tenant::Runtime::new(cfg.tenant.clone())),
            ui_sign_in: crate::ui::session::SignInLimiter::per_node(),
            app_urls,
            refusals: crate::mdm::refusals::Recorder::default(),
            throttle,
            cfg,
            store,
            ca,
            clock,
            admin_token,
            tls: TlsMaterial {
                chain: tls_chain,
                key: tls_key,
            },
        })
    }
}
