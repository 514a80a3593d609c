//! Progress bars on stderr (rate and ETA), shared with the logger so log lines do not tear them.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::LazyLock;

/// The one multi-bar all stages draw into; the logger prints through it.
pub static MULTI: LazyLock<MultiProgress> = LazyLock::new(|| {
    let m = MultiProgress::new();
    m.set_draw_target(ProgressDrawTarget::stderr_with_hz(8));
    m
});

/// A bar of `len` steps labelled `label`; hidden when `enabled` is false.
pub fn bar(len: u64, label: &str, unit: &str, enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(&format!(
        "{{prefix:>9.bold}} [{{bar:32}}] {{human_pos}}/{{human_len}} {unit} {{per_sec:>14}} ETA {{eta}}"
    ))
    .expect("static template")
    .progress_chars("=> ");
    MULTI.add(ProgressBar::new(len).with_style(style).with_prefix(label.to_string()))
}
