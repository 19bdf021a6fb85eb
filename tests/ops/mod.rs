//! Operations (issue 16): Prometheus metrics, JSON logs, and the installation files
//! (systemd unit, default config).

mod deploy;
mod logs;
mod metrics;

/// The value of one series (`name{labels}` exactly as exposed) in an OpenMetrics text.
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.split(' ').next())
            .and_then(|v| v.parse().ok())
    })
}

/// Like [`value`], panicking with the exposition when the series is absent.
pub fn must(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}
