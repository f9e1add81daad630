//! Counter streams (`allow_msg_counter`): arbitrary-precision signed decimal integers, as
//! nats-server keeps them with Go's `big.Int`, added without a big-number dependency.

use std::cmp::Ordering;

/// A signed integer of any size: sign and decimal magnitude (no leading zeros; zero is "0"
/// and never negative).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigInt {
    negative: bool,
    /// Most significant digit first, each 0..=9.
    digits: Vec<u8>,
}

impl BigInt {
    /// Zero, the value of a subject that has no counter message yet.
    pub fn zero() -> BigInt {
        BigInt {
            negative: false,
            digits: vec![0],
        }
    }

    /// Parses what Go's `big.Int.SetString(s, 10)` accepts: an optional sign, then decimal
    /// digits (underscores are not accepted without a base prefix).
    pub fn parse(s: &str) -> Option<BigInt> {
        let (negative, rest) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits: Vec<u8> = rest.bytes().map(|b| b - b'0').collect();
        Some(BigInt::normalized(negative, digits))
    }

    fn normalized(negative: bool, digits: Vec<u8>) -> BigInt {
        let first = digits.iter().position(|&d| d != 0);
        match first {
            None => BigInt::zero(),
            Some(i) => BigInt {
                negative,
                digits: digits[i..].to_vec(),
            },
        }
    }

    /// Whether this is zero.
    pub fn is_zero(&self) -> bool {
        self.digits == [0]
    }

    /// `-self`.
    pub fn neg(&self) -> BigInt {
        BigInt::normalized(!self.negative, self.digits.clone())
    }

    /// `self + other`.
    pub fn add(&self, other: &BigInt) -> BigInt {
        if self.negative == other.negative {
            return BigInt::normalized(self.negative, add_mag(&self.digits, &other.digits));
        }
        match cmp_mag(&self.digits, &other.digits) {
            Ordering::Equal => BigInt::zero(),
            Ordering::Greater => {
                BigInt::normalized(self.negative, sub_mag(&self.digits, &other.digits))
            }
            Ordering::Less => {
                BigInt::normalized(other.negative, sub_mag(&other.digits, &self.digits))
            }
        }
    }
}

impl std::fmt::Display for BigInt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        for d in &self.digits {
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

fn cmp_mag(a: &[u8], b: &[u8]) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn add_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len().max(b.len()) + 1);
    let (mut i, mut j, mut carry) = (a.len(), b.len(), 0u8);
    while i > 0 || j > 0 || carry > 0 {
        let mut s = carry;
        if i > 0 {
            i -= 1;
            s += a[i];
        }
        if j > 0 {
            j -= 1;
            s += b[j];
        }
        out.push(s % 10);
        carry = s / 10;
    }
    out.reverse();
    out
}

/// `a - b` for magnitudes with `a >= b`.
fn sub_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len());
    let (mut j, mut borrow) = (b.len(), 0i8);
    for i in (0..a.len()).rev() {
        let mut d = a[i] as i8 - borrow;
        if j > 0 {
            j -= 1;
            d -= b[j] as i8;
        }
        borrow = if d < 0 { 1 } else { 0 };
        out.push((d + 10 * borrow) as u8);
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> BigInt {
        BigInt::parse(s).unwrap()
    }

    #[test]
    fn parses_signs_and_rejects_the_rest() {
        assert_eq!(n("+5").to_string(), "5");
        assert_eq!(n("-0").to_string(), "0");
        assert_eq!(n("007").to_string(), "7");
        for bad in ["", "+", "-", "1.5", "1e3", " 1", "0x10", "1_000", "abc"] {
            assert!(BigInt::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn adds_across_signs_and_beyond_64_bits() {
        assert_eq!(n("5").add(&n("-2")).to_string(), "3");
        assert_eq!(n("-5").add(&n("2")).to_string(), "-3");
        assert_eq!(n("2").add(&n("-2")).to_string(), "0");
        assert_eq!(n("-7").add(&n("-8")).to_string(), "-15");
        assert_eq!(n("1000").add(&n("-1")).to_string(), "999");
        let big = "18446744073709551615"; // u64::MAX
        assert_eq!(n(big).add(&n("1")).to_string(), "18446744073709551616");
        assert_eq!(n("-18446744073709551616").add(&n(big)).to_string(), "-1");
    }
}
