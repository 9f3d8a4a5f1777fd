//! Which API server to talk to and how: `--kubeconfig`, `--apiserver`, or the in-cluster service account.

use std::path::PathBuf;

use kube::config::{InClusterError, KubeConfigOptions, Kubeconfig, KubeconfigError};

/// Where the API server is. Neither field: the in-cluster configuration (service account
/// token and CA, `KUBERNETES_SERVICE_HOST`/`_PORT`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiSource {
    /// `--kubeconfig`: its current context, or `context`.
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (Corefile `kubeconfig PATH CONTEXT`).
    pub context: Option<String>,
    /// `--apiserver`: the URL; with `--kubeconfig` it replaces the context's server, alone it
    /// is used without credentials (`http://` for a local proxy such as `kubectl proxy`).
    pub apiserver: Option<String>,
}

/// Why no client for the API server could be made.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("--apiserver {url:?} is not a URL: {problem}")]
    Url { url: String, problem: String },
    #[error("--kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: KubeconfigError,
    },
    #[error("in-cluster Kubernetes configuration: {0} (outside a pod, give --kubeconfig or --apiserver)")]
    InCluster(#[source] InClusterError),
    #[error("Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

fn parse_url(url: &str) -> Result<http::Uri, K8sError> {
    let bad = |problem: String| K8sError::Url {
        url: url.to_owned(),
        problem,
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("the scheme must be http:// or https://".to_owned())),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host".to_owned()));
    }
    Ok(uri)
}

/// Checks what can be checked before starting (the URL's syntax).
pub fn check(source: &ApiSource) -> Result<(), K8sError> {
    if let Some(url) = &source.apiserver {
        parse_url(url)?;
    }
    Ok(())
}

/// The kube configuration `source` describes.
pub async fn config(source: &ApiSource) -> Result<kube::Config, K8sError> {
    let url = source.apiserver.as_deref().map(parse_url).transpose()?;
    let mut config = match (&source.kubeconfig, url.clone()) {
        (Some(path), _) => {
            let err = |source| K8sError::Kubeconfig {
                path: path.clone(),
                source,
            };
            let file = Kubeconfig::read_from(path).map_err(err)?;
            let options = KubeConfigOptions {
                context: source.context.clone(),
                ..KubeConfigOptions::default()
            };
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(err)?
        }
        (None, Some(url)) => kube::Config::new(url),
        (None, None) => kube::Config::incluster().map_err(K8sError::InCluster)?,
    };
    if let Some(url) = url {
        config.cluster_url = url;
    }
    Ok(config)
}

/// A client for the API server `source` describes.
pub async fn client(source: &ApiSource) -> Result<kube::Client, K8sError> {
    let config = config(source).await?;
    kube::Client::try_from(config).map_err(K8sError::Client)
}
