//! The probability a span was kept with (design.md section 5), from OTel probability sampling's
//! `tracestate` threshold or from our SDK's `mcpobs.sample.probability` attribute.

use super::attrs::Attrs;
use opentelemetry_proto::tonic::common::v1::any_value::Value as PValue;

/// Attribute our SDK sets on every kept span; consumed (removed) when it holds a usable number.
pub const SAMPLE_PROBABILITY_KEY: &str = "mcpobs.sample.probability";

/// 2^56: OTel thresholds are 56-bit, written as up to 14 hex digits with trailing zeros removed.
const THRESHOLD_SPACE: u64 = 1 << 56;
const THRESHOLD_HEX_DIGITS_MAX: usize = 14;

/// The sampling probability of a span, in (0, 1].
///
/// Our SDK's attribute wins over `tracestate`: the SDK decides after the span ended (it keeps every
/// error and slow call), so its number is the final word for this span, while the threshold in
/// `tracestate` is the head decision propagated with the trace. Garbage in either is ignored, and
/// the default is 1.0 (unsampled data counts once).
pub(super) fn take_probability(attrs: &mut Attrs, trace_state: &str) -> f64 {
    let from_attribute = attrs.take_if(SAMPLE_PROBABILITY_KEY, |v| match v {
        PValue::DoubleValue(d) => clamp_probability(*d),
        PValue::IntValue(i) => clamp_probability(*i as f64),
        PValue::StringValue(s) => s.trim().parse::<f64>().ok().and_then(clamp_probability),
        _ => None,
    });
    from_attribute
        .or_else(|| probability_from_tracestate(trace_state))
        .unwrap_or(1.0)
}

/// Clamps to (0, 1]: above 1 means 1; zero, negative or NaN carries no usable weight.
pub(super) fn clamp_probability(p: f64) -> Option<f64> {
    if p > 0.0 {
        Some(p.min(1.0))
    } else {
        None
    }
}

/// Reads the OTel `th` (rejection threshold) sub-key of the `ot` tracestate entry:
/// `ot=th:8;rv:...` means threshold 0x80000000000000, probability 1 - T/2^56 = 0.5; `th:0` is 1.0.
/// `None` when there is no `ot` entry, no `th`, or it is malformed.
pub fn probability_from_tracestate(trace_state: &str) -> Option<f64> {
    // Most spans carry no tracestate: skip the splitting.
    if trace_state.is_empty() {
        return None;
    }
    let ot = trace_state.split(',').find_map(|member| {
        let (key, value) = member.trim().split_once('=')?;
        (key == "ot").then_some(value)
    })?;
    let th = ot.split(';').find_map(|field| field.strip_prefix("th:"))?;
    if th.is_empty()
        || th.len() > THRESHOLD_HEX_DIGITS_MAX
        || !th.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    let digits = u64::from_str_radix(th, 16).ok()?;
    // Trailing zeros were removed by the sender: shift the digits back into the 56-bit space.
    let shift = 4 * (THRESHOLD_HEX_DIGITS_MAX - th.len());
    let threshold = digits.checked_shl(u32::try_from(shift).ok()?)?;
    let kept = THRESHOLD_SPACE.checked_sub(threshold)?;
    // threshold < 2^56 always (14 hex digits), so kept >= 1 and p is in (0, 1].
    Some(kept as f64 / THRESHOLD_SPACE as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};

    #[test]
    fn tracestate_thresholds() {
        assert_eq!(probability_from_tracestate("ot=th:0"), Some(1.0));
        assert_eq!(probability_from_tracestate("ot=th:8"), Some(0.5));
        assert_eq!(probability_from_tracestate("ot=th:c"), Some(0.25));
        assert_eq!(
            probability_from_tracestate("ot=rv:abcdef01234567;th:c"),
            Some(0.25)
        );
        assert_eq!(
            probability_from_tracestate("vendor=x, ot=th:8;rv:1 ,b=c"),
            Some(0.5)
        );
        // 0xfd70a4 00000000 → about 1%.
        let p = probability_from_tracestate("ot=th:fd70a4").expect("p");
        assert!((p - 0.01).abs() < 1e-6, "{p}");
        // The largest threshold keeps 1 in 2^56, still above zero.
        let tiny = probability_from_tracestate("ot=th:ffffffffffffff").expect("p");
        assert!(tiny > 0.0 && tiny < 1e-16);
    }

    #[test]
    fn tracestate_garbage_is_ignored() {
        for ts in [
            "",
            "ot=",
            "ot=th:",
            "ot=th:xyz",
            "ot=th:fffffffffffffff", // 15 digits
            "ot=rv:8",
            "other=th:8",
            "ot=th:-1",
            "ot=th:+8",
        ] {
            assert_eq!(probability_from_tracestate(ts), None, "{ts}");
        }
    }

    fn attrs_with(value: PValue) -> Attrs {
        Attrs::new(vec![KeyValue {
            key: SAMPLE_PROBABILITY_KEY.into(),
            value: Some(AnyValue { value: Some(value) }),
            key_strindex: 0,
        }])
    }

    #[test]
    fn attribute_wins_and_is_consumed() {
        let mut attrs = attrs_with(PValue::DoubleValue(0.1));
        assert_eq!(take_probability(&mut attrs, "ot=th:8"), 0.1);
        assert!(attrs.into_inner().is_empty());
    }

    #[test]
    fn attribute_is_clamped_or_ignored() {
        let mut attrs = attrs_with(PValue::DoubleValue(7.0));
        assert_eq!(take_probability(&mut attrs, ""), 1.0);
        let mut attrs = attrs_with(PValue::DoubleValue(f64::NAN));
        assert_eq!(take_probability(&mut attrs, "ot=th:8"), 0.5);
        assert_eq!(attrs.into_inner().len(), 1, "garbage stays visible");
        let mut attrs = attrs_with(PValue::DoubleValue(-0.5));
        assert_eq!(take_probability(&mut attrs, ""), 1.0);
        let mut attrs = attrs_with(PValue::StringValue("0.25".into()));
        assert_eq!(take_probability(&mut attrs, ""), 0.25);
        let mut attrs = attrs_with(PValue::BoolValue(true));
        assert_eq!(take_probability(&mut attrs, ""), 1.0);
    }
}
