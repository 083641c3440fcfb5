//! Equality of short strings without a `memcmp` call: the "same value as the previous row"
//! checks of dictionary building and rollup aggregation compare mostly short, mostly equal
//! strings once per row, where the call itself was the cost.

/// `a == b`, with strings of up to 16 bytes compared by two overlapping word loads.
#[inline]
pub fn same_str(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => word4(a, 0) == word4(b, 0) && word4(a, n - 4) == word4(b, n - 4),
        8..=16 => word8(a, 0) == word8(b, 0) && word8(a, n - 8) == word8(b, n - 8),
        _ => a == b,
    }
}

#[inline]
fn word4(s: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&s[at..at + 4]);
    u32::from_ne_bytes(w)
}

#[inline]
fn word8(s: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[at..at + 8]);
    u64::from_ne_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::same_str;
    use proptest::prelude::*;

    #[test]
    fn every_length_and_position() {
        for n in 0..40usize {
            let a: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            assert!(same_str(&a, &a.clone()));
            for i in 0..n {
                let mut b = a.clone().into_bytes();
                b[i] = b'Z';
                let b = String::from_utf8(b).unwrap();
                assert!(!same_str(&a, &b), "n {n} differs at {i}");
            }
            assert!(!same_str(&a, &format!("{a}x")));
        }
    }

    proptest! {
        #[test]
        fn equals_str_eq(a in "[ab]{0,20}", b in "[ab]{0,20}") {
            prop_assert_eq!(same_str(&a, &b), a == b);
        }
    }
}
