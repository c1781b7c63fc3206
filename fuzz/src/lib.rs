//! Helpers shared by the fuzz targets: structured JSON values for `arbitrary`, and the service
//! harness (`roomcast_testkit::harness`, the one the property tests in
//! `shared/tests/properties.rs` use).

use arbitrary::{Arbitrary, Unstructured};
use serde_json::{Map, Number, Value};

pub use roomcast_testkit::harness;

/// How deep generated JSON nests (deeper values become `null`): enough for every shape the
/// protocol has, small enough to keep inputs cheap.
const MAX_DEPTH: u32 = 4;

/// An arbitrary JSON value with the numbers and strings that matter at type boundaries.
#[derive(Debug, Clone)]
pub struct Json(pub Value);

impl<'a> Arbitrary<'a> for Json {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        json_value(u, 0).map(Json)
    }
}

fn json_value(u: &mut Unstructured<'_>, depth: u32) -> arbitrary::Result<Value> {
    let kind = if depth >= MAX_DEPTH {
        u.int_in_range(0..=5)?
    } else {
        u.int_in_range(0..=7)?
    };
    Ok(match kind {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::Number(Number::from(interesting_u64(u)?)),
        3 => Value::Number(Number::from(-i64::from(u.arbitrary::<u32>()?) - 1)),
        4 => Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
        5 => Value::String(u.arbitrary()?),
        6 => {
            let n = u.int_in_range(0..=4)?;
            Value::Array(
                (0..n)
                    .map(|_| json_value(u, depth + 1))
                    .collect::<arbitrary::Result<_>>()?,
            )
        }
        _ => {
            let n = u.int_in_range(0..=4)?;
            let mut map = Map::new();
            for _ in 0..n {
                map.insert(u.arbitrary()?, json_value(u, depth + 1)?);
            }
            Value::Object(map)
        }
    })
}

/// Small numbers mostly, and the edges of the integer types now and then.
pub fn interesting_u64(u: &mut Unstructured<'_>) -> arbitrary::Result<u64> {
    Ok(match u.int_in_range(0..=9)? {
        0 => 0,
        1 => u64::MAX,
        2 => u64::MAX - 1,
        3 => u64::from(u32::MAX),
        4 => i64::MAX as u64,
        5 => u.arbitrary()?,
        _ => u64::from(u.arbitrary::<u8>()?),
    })
}

/// A field of a hostile object: absent, a plausible value, or any JSON at all.
#[derive(Debug, Clone)]
pub enum Field {
    /// Left out.
    Absent,
    /// A value of the expected type.
    Plausible(Value),
    /// Anything.
    Any(Value),
}

impl Field {
    /// Generates a field whose plausible value comes from `plausible`.
    pub fn arbitrary_with(
        u: &mut Unstructured<'_>,
        plausible: impl FnOnce(&mut Unstructured<'_>) -> arbitrary::Result<Value>,
    ) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0..=7)? {
            0 => Self::Absent,
            1 => Self::Any(json_value(u, 1)?),
            _ => Self::Plausible(plausible(u)?),
        })
    }

    /// Puts the field into `map` under `key` unless absent.
    pub fn put(self, map: &mut Map<String, Value>, key: &str) {
        match self {
            Self::Absent => {}
            Self::Plausible(v) | Self::Any(v) => {
                map.insert(key.to_owned(), v);
            }
        }
    }
}

/// One of `choices`, or an arbitrary string now and then.
pub fn name_like(u: &mut Unstructured<'_>, choices: &[&str]) -> arbitrary::Result<String> {
    if u.ratio(1, 6)? {
        return u.arbitrary();
    }
    Ok((*u.choose(choices)?).to_owned())
}
