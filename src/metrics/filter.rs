//! Named predicates on an event's fields (`[[filters]]`), evaluated once per counted event into
//! one bit per filter, which the metrics then select on (docs/SEMANTICS.md, "Filters").

use crate::parse::path::FieldPath;
use crate::parse::scan::Field;

/// A constant in a clause.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Str(String),
    Num(Num),
    Bool(bool),
}

/// A number in a clause: integers are kept exact (`eq = 1234567890123456789` must not match its
/// neighbour, as it would through `f64`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i64),
    Float(f64),
}

/// How a field's number compares with a clause's number: exactly when both are integers,
/// else as `f64`. `None`: the field is not a number.
fn cmp(v: Option<Field<'_>>, x: Num) -> Option<std::cmp::Ordering> {
    match (v?, x) {
        (Field::Int(i), Num::Int(n)) => Some(i.cmp(&n)),
        (Field::UInt(u), Num::Int(n)) => Some(i128::from(u).cmp(&i128::from(n))),
        (f @ (Field::Int(_) | Field::UInt(_) | Field::Float(_)), x) => {
            let x = match x {
                Num::Int(n) => n as f64,
                Num::Float(f) => f,
            };
            f.as_f64()?.partial_cmp(&x)
        }
        _ => None,
    }
}

#[derive(Debug, Clone)]
pub enum Op {
    Eq(Scalar),
    Ne(Scalar),
    In(Vec<Scalar>),
    NotIn(Vec<Scalar>),
    Regex(regex::Regex),
    Lt(Num),
    Le(Num),
    Gt(Num),
    Ge(Num),
    Exists(bool),
}

#[derive(Debug, Clone)]
pub struct Clause {
    pub path: FieldPath,
    pub op: Op,
}

#[derive(Debug, Clone)]
pub struct Filter {
    pub name: String,
    pub clauses: Vec<Clause>,
}

/// `v` equals `x`: the same JSON type and value (numbers numerically; `null` is absent).
fn equals(v: Option<Field<'_>>, x: &Scalar) -> bool {
    match (v, x) {
        (Some(Field::Str(s)), Scalar::Str(x)) => s == x,
        (Some(Field::Bool(b)), Scalar::Bool(x)) => b == *x,
        (v, Scalar::Num(x)) => cmp(v, *x) == Some(std::cmp::Ordering::Equal),
        _ => false,
    }
}

impl Op {
    /// Whether the clause holds for the field's value `v` (`None`: the field is absent).
    pub(crate) fn holds(&self, v: Option<Field<'_>>) -> bool {
        let v = v.filter(|f| *f != Field::Null);
        match self {
            Op::Eq(x) => equals(v, x),
            Op::Ne(x) => !equals(v, x),
            Op::In(xs) => xs.iter().any(|x| equals(v, x)),
            Op::NotIn(xs) => !xs.iter().any(|x| equals(v, x)),
            Op::Regex(re) => matches!(v, Some(Field::Str(s)) if re.is_match(s)),
            Op::Lt(n) => cmp(v, *n).is_some_and(|o| o.is_lt()),
            Op::Le(n) => cmp(v, *n).is_some_and(|o| o.is_le()),
            Op::Gt(n) => cmp(v, *n).is_some_and(|o| o.is_gt()),
            Op::Ge(n) => cmp(v, *n).is_some_and(|o| o.is_ge()),
            Op::Exists(want) => v.is_some() == *want,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_on_types_and_absence() {
        let s = Some(Field::Str("Black"));
        let n = Some(Field::Int(2));
        let f = Some(Field::Float(2.5));
        let t = Some(Field::Bool(true));
        let null = Some(Field::Null);
        assert!(Op::Eq(Scalar::Str("Black".into())).holds(s));
        assert!(!Op::Eq(Scalar::Str("black".into())).holds(s));
        assert!(
            !Op::Eq(Scalar::Str("2".into())).holds(n),
            "a string never equals a number"
        );
        assert!(Op::Eq(Scalar::Num(Num::Float(2.0))).holds(n), "2 == 2.0");
        let big = Some(Field::Int(1_234_567_890_123_456_789));
        assert!(!Op::Eq(Scalar::Num(Num::Int(1_234_567_890_123_456_788))).holds(big));
        assert!(Op::Gt(Num::Int(1_234_567_890_123_456_788)).holds(big));
        assert!(Op::Eq(Scalar::Bool(true)).holds(t));
        assert!(
            Op::Ne(Scalar::Str("x".into())).holds(None),
            "absent is ne anything"
        );
        assert!(Op::Ne(Scalar::Str("x".into())).holds(null));
        assert!(Op::In(vec![Scalar::Num(Num::Int(1)), Scalar::Str("Black".into())]).holds(s));
        assert!(Op::NotIn(vec![Scalar::Str("red".into())]).holds(s));
        let re = regex::Regex::new("(?i)bla").unwrap();
        assert!(Op::Regex(re.clone()).holds(s));
        assert!(!Op::Regex(re).holds(n), "a regex never matches a number");
        assert!(
            Op::Ge(Num::Int(2)).holds(n)
                && Op::Gt(Num::Int(2)).holds(f)
                && !Op::Lt(Num::Int(2)).holds(n)
        );
        assert!(Op::Le(Num::Float(2.5)).holds(f));
        assert!(
            !Op::Ge(Num::Int(0)).holds(Some(Field::Str("5"))),
            "a numeric string never compares"
        );
        assert!(!Op::Ge(Num::Int(0)).holds(None));
        assert!(Op::Exists(true).holds(t) && !Op::Exists(true).holds(null));
        assert!(Op::Exists(false).holds(None) && Op::Exists(false).holds(null));
    }
}
