//! The plan cache's text key: a statement's vector literals cut out of its
//! text (so queries that differ only in their vectors share one entry) and
//! turned into values.

use arrow::array::{ArrayRef, Float64Array, Int64Array, ListArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::Field;
use datafusion::common::ScalarValue;
use std::sync::Arc;

/// A query vector's value as [`crate::query::engine::Engine::plan`] binds it:
/// the numbers (each with whether it was written as an integer) as a list
/// of Int64 when every one is an integer that fits, else of Float64.
pub fn vector_value(xs: &[(f64, bool)]) -> ScalarValue {
    let all_int = xs.iter().all(|(x, int)| *int && x.abs() < 9.0e15);
    let values: ArrayRef = if all_int {
        Arc::new(Int64Array::from_iter_values(
            xs.iter().map(|(x, _)| *x as i64),
        ))
    } else {
        Arc::new(Float64Array::from_iter_values(xs.iter().map(|(x, _)| *x)))
    };
    ScalarValue::List(Arc::new(ListArray::new(
        Arc::new(Field::new_list_field(values.data_type().clone(), true)),
        OffsetBuffer::from_lengths([values.len()]),
        values,
        None,
    )))
}

/// A query's text with its vector literals cut out, and their values.
#[derive(Debug)]
pub struct CutText {
    /// The text without the vectors, and where each was: two texts with
    /// the same key differ only in the numbers of their vectors.
    pub key: String,
    /// The vectors' values, in the order of the text, named as
    /// `hoist_vector_literals` names them.
    pub vectors: Vec<(String, ScalarValue)>,
}

/// Finds the vector literals of `sql` without parsing it: bracketed lists
/// of at least `min` plain numbers (`-1.5e3`, `2`), outside quotes, so a
/// repeated query can be looked up by its text ([`PlanCache::get_text`]).
/// `None` if there are none, or the text has anything the scan does not
/// follow (comments, backslashes, dollar quoting): such queries are only
/// looked up by their parsed statement.
///
/// Whether a text's vectors are the ones the parser hoists is checked
/// once, when the plan is cached under the text ([`PlanCache::insert`]):
/// a text with the same key differs only inside the cut-out lists, which
/// hold nothing but numbers, commas and spaces, so it parses the same way.
pub fn cut_vectors(sql: &str, min: usize) -> Option<CutText> {
    if sql.contains(['\\', '$', '`']) || sql.contains("--") || sql.contains("/*") {
        return None;
    }
    let b = sql.as_bytes();
    let (mut key, mut vectors, mut spans) = (String::new(), Vec::new(), Vec::new());
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                // To the closing quote (a doubled one is an escaped quote).
                i += 1;
                loop {
                    match b.get(i) {
                        None => return None,
                        Some(&c) if c == q => {
                            if b.get(i + 1) == Some(&q) {
                                i += 2;
                            } else {
                                i += 1;
                                break;
                            }
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            b'[' => match number_list(b, i + 1) {
                Some((xs, end)) if xs.len() >= min => {
                    key.push_str(&sql[copied..i]);
                    spans.push(key.len());
                    copied = end;
                    i = end;
                    let name = format!("quiver_vector_{}", vectors.len() + 1);
                    vectors.push((name, vector_value(&xs)));
                }
                _ => i += 1,
            },
            _ => i += 1,
        }
    }
    if vectors.is_empty() {
        return None;
    }
    key.push_str(&sql[copied..]);
    key.push('\0');
    for s in spans {
        key.push_str(&s.to_string());
        key.push(',');
    }
    Some(CutText { key, vectors })
}

/// The numbers of a list `n, n, ..., n]` starting at `b[i]`, and the index
/// after its `]`; each number with whether it is written as an integer.
pub(crate) fn number_list(b: &[u8], mut i: usize) -> Option<(Vec<(f64, bool)>, usize)> {
    let skip_space = |i: &mut usize| {
        while b.get(*i).is_some_and(|c| c.is_ascii_whitespace()) {
            *i += 1;
        }
    };
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    let mut xs = Vec::new();
    loop {
        skip_space(&mut i);
        let start = i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        if !digits(&mut i) {
            return None;
        }
        let mut int = true;
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
            int = false;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !digits(&mut i) {
                return None;
            }
            int = false;
        }
        let text = std::str::from_utf8(&b[start..i]).ok()?;
        xs.push((text.parse::<f64>().ok()?, int));
        skip_space(&mut i);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b']') => return Some((xs, i + 1)),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::DataType;

    fn vec_of(n: usize, f: impl Fn(usize) -> String) -> String {
        let xs: Vec<String> = (0..n).map(f).collect();
        format!("[{}]", xs.join(", "))
    }

    #[test]
    fn cut_vectors_finds_the_vectors_and_keys_the_rest_of_the_text() {
        let a = vec_of(16, |i| format!("{i}.5"));
        let b = vec_of(16, |i| format!("-{i}e-2"));
        let c = vec_of(20, |i| format!("{i}"));
        let sql = |v: &str, w: &str| {
            format!("SELECT id, l2_distance(v, {v}) AS d FROM t WHERE l1_distance(v, {w}) < 3 ORDER BY d LIMIT 5")
        };
        let x = cut_vectors(&sql(&a, &b), 16).unwrap();
        let y = cut_vectors(&sql(&c, &a), 16).unwrap();
        // Same text around other vectors (of other lengths): same key.
        assert_eq!(x.key, y.key);
        assert_eq!(x.vectors.len(), 2);
        assert_eq!(x.vectors[0].0, "quiver_vector_1");
        assert_eq!(x.vectors[1].0, "quiver_vector_2");
        let parsed: Vec<(f64, bool)> = (0..16).map(|i| (-(i as f64) / 100.0, false)).collect();
        assert_eq!(x.vectors[1].1, vector_value(&parsed));
        // Integers stay integers.
        let ints: Vec<(f64, bool)> = (0..20).map(|i| (i as f64, true)).collect();
        assert_eq!(y.vectors[0].1, vector_value(&ints));
        assert!(
            matches!(&y.vectors[0].1, ScalarValue::List(l) if l.values().data_type() == &DataType::Int64)
        );
        // Other text: another key.
        let other = cut_vectors(&sql(&a, &b).replace("< 3", "< 4"), 16).unwrap();
        assert_ne!(other.key, x.key);
        // The text between the vectors matters even when the rest is equal.
        let moved = format!("SELECT {a}, 'x' || {a}");
        let moved2 = format!("SELECT {a} || 'x', {a}");
        assert_ne!(
            cut_vectors(&moved, 16).unwrap().key,
            cut_vectors(&moved2, 16).unwrap().key
        );
    }

    #[test]
    fn cut_vectors_leaves_what_is_not_a_vector() {
        let v = vec_of(16, |i| format!("{i}"));
        // Inside a string or a quoted name: not cut, so part of the key.
        let quoted = format!("SELECT '{v}' AS \"{v}\", 'it''s {v}' FROM t");
        assert!(cut_vectors(&quoted, 16).is_none());
        let with = |s: &str| format!("SELECT '{s}', l2_distance(v, {v}) FROM t");
        let (p, q) = (
            cut_vectors(&with(&v), 16).unwrap(),
            cut_vectors(&with(&v.replace('1', "2")), 16).unwrap(),
        );
        assert_eq!(p.vectors.len(), 1);
        assert_ne!(p.key, q.key);
        // Too short, not only numbers, or not plain numbers.
        for not in [
            vec_of(15, |i| format!("{i}")),
            vec_of(16, |i| if i == 3 { "x".into() } else { format!("{i}") }),
            vec_of(16, |i| if i == 3 { "- 1".into() } else { format!("{i}") }),
            vec_of(16, |i| if i == 3 { ".5".into() } else { format!("{i}") }),
            vec_of(16, |i| if i == 3 { "1e".into() } else { format!("{i}") }),
            vec_of(16, |i| if i == 3 { "(1)".into() } else { format!("{i}") }),
        ] {
            assert!(
                cut_vectors(&format!("SELECT l2_distance(v, {not}) FROM t"), 16).is_none(),
                "{not}"
            );
        }
        // Text the scan does not follow.
        for odd in [
            format!("SELECT {v} -- comment"),
            format!("SELECT {v} /* comment */"),
            format!("SELECT {v}, $1"),
            format!("SELECT {v}, E'\\''"),
            format!("SELECT {v}, 'unclosed"),
        ] {
            assert!(cut_vectors(&odd, 16).is_none(), "{odd}");
        }
    }
}
