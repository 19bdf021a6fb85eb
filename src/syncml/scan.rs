//! Word-at-a-time byte searches (SWAR on `u64`, no `unsafe`, no dependency) used by the lexer,
//! the unescaper and the writer.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

#[inline(always)]
fn zero_bytes(v: u64) -> u64 {
    v.wrapping_sub(LO) & !v & HI
}

#[inline(always)]
fn word(h: &[u8], i: usize) -> Option<u64> {
    match h.get(i..i + 8) {
        Some(s) => s.try_into().ok().map(u64::from_le_bytes),
        None => None,
    }
}

/// Position of the first byte in `h[from..]` that is one of `N` needles.
#[inline(always)]
pub(crate) fn find_any<const N: usize>(h: &[u8], from: usize, needles: [u8; N]) -> Option<usize> {
    let mut i = from;
    while let Some(w) = word(h, i) {
        let mut m = 0;
        for n in needles {
            m |= zero_bytes(w ^ (LO * u64::from(n)));
        }
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    while i < h.len() {
        if needles.contains(&h[i]) {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[inline]
pub(crate) fn find_seq(h: &[u8], from: usize, seq: &[u8]) -> Option<usize> {
    let first = *seq.first()?;
    let mut i = from;
    loop {
        let j = find_any(h, i, [first])?;
        if h.get(j..j + seq.len()) == Some(seq) {
            return Some(j);
        }
        i = j + 1;
    }
}

/// `true` if `s` is only XML white space.
#[inline]
pub(crate) fn is_ws(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

#[inline]
pub(crate) fn is_ws_byte(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_any_matches_naive() {
        let hay = b"abcdefghijklmnop<qrstu&vwxyz\rABCDEFGHIJ<";
        for from in 0..hay.len() {
            let naive = hay[from..]
                .iter()
                .position(|c| [b'<', b'&', b'\r'].contains(c))
                .map(|p| p + from);
            assert_eq!(
                find_any(hay, from, [b'<', b'&', b'\r']),
                naive,
                "from {from}"
            );
        }
        // High bytes must not give false positives.
        let hay = "ééééééééé<".as_bytes();
        assert_eq!(find_any(hay, 0, [b'<']), Some(hay.len() - 1));
    }
}
