//! Named predicates on an event's fields (`[[filters]]`), evaluated once per counted event into
//! one bit per filter, which the metrics then select on (docs/SEMANTICS.md, "Filters").

use crate::parse::path::FieldPath;
use crate::parse::scan::Field;

/// A constant in a clause.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Str(String),
    Num(f64),
    Bool(bool),
}

#[derive(Debug, Clone)]
pub enum Op {
    Eq(Scalar),
    Ne(Scalar),
    In(Vec<Scalar>),
    NotIn(Vec<Scalar>),
    Regex(regex_lite::Regex),
    Lt(f64),
    Le(f64),
    Gt(f64),
    Ge(f64),
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
        (Some(Field::Int(i)), Scalar::Num(x)) => i as f64 == *x,
        (Some(Field::UInt(u)), Scalar::Num(x)) => u as f64 == *x,
        (Some(Field::Float(f)), Scalar::Num(x)) => f == *x,
        _ => false,
    }
}

fn compare(v: Option<Field<'_>>, test: impl Fn(f64) -> bool) -> bool {
    v.and_then(|f| f.as_f64()).is_some_and(test)
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
            Op::Lt(n) => compare(v, |x| x < *n),
            Op::Le(n) => compare(v, |x| x <= *n),
            Op::Gt(n) => compare(v, |x| x > *n),
            Op::Ge(n) => compare(v, |x| x >= *n),
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
        assert!(Op::Eq(Scalar::Num(2.0)).holds(n), "1 == 1.0");
        assert!(Op::Eq(Scalar::Bool(true)).holds(t));
        assert!(
            Op::Ne(Scalar::Str("x".into())).holds(None),
            "absent is ne anything"
        );
        assert!(Op::Ne(Scalar::Str("x".into())).holds(null));
        assert!(Op::In(vec![Scalar::Num(1.0), Scalar::Str("Black".into())]).holds(s));
        assert!(Op::NotIn(vec![Scalar::Str("red".into())]).holds(s));
        let re = regex_lite::Regex::new("(?i)bla").unwrap();
        assert!(Op::Regex(re.clone()).holds(s));
        assert!(!Op::Regex(re).holds(n), "a regex never matches a number");
        assert!(Op::Ge(2.0).holds(n) && Op::Gt(2.0).holds(f) && !Op::Lt(2.0).holds(n));
        assert!(Op::Le(2.5).holds(f));
        assert!(
            !Op::Ge(0.0).holds(Some(Field::Str("5"))),
            "a numeric string never compares"
        );
        assert!(!Op::Ge(0.0).holds(None));
        assert!(Op::Exists(true).holds(t) && !Op::Exists(true).holds(null));
        assert!(Op::Exists(false).holds(None) && Op::Exists(false).holds(null));
    }
}
