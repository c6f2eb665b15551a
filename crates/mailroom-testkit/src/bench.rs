//! Figures for the benchmarks (`cargo xtask bench NAME`): percentiles of measured times
//! and milliseconds to print. Benchmarks print figures; tests never assert times.

use std::time::Duration;

/// The median and the 90th percentile of `times` (nearest rank; any order).
///
/// # Panics
/// When `times` is empty: a benchmark that measured nothing has nothing to print.
pub fn median_and_p90(mut times: Vec<Duration>) -> (Duration, Duration) {
    assert!(!times.is_empty(), "no times were measured");
    times.sort_unstable();
    (percentile(&times, 0.5), percentile(&times, 0.9))
}

fn percentile(sorted: &[Duration], share: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * share).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// A duration in milliseconds, for printing.
pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_and_90th_percentile_are_nearest_ranks_of_the_sorted_times() {
        let times: Vec<Duration> = (1..=11).rev().map(Duration::from_millis).collect();
        assert_eq!(
            median_and_p90(times),
            (Duration::from_millis(6), Duration::from_millis(10))
        );
        let one = median_and_p90(vec![Duration::from_millis(3)]);
        assert_eq!(one, (Duration::from_millis(3), Duration::from_millis(3)));
        assert_eq!(ms(Duration::from_micros(1_500)), 1.5);
    }
}
