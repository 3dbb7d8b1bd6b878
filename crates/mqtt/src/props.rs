//! MQTT 5 property lists: bounded in count, each identifier at most once
//! (user properties excepted), unknown identifiers refused.

use crate::error::DecodeError;
use crate::limits::Limits;
use crate::wire::Reader;

/// The properties of a packet: its length, then at most
/// `limits.max_properties` of them; `each` handles one and says whether the
/// identifier is allowed in this packet (one that is not, or is unknown, is
/// a malformed packet; one given twice, other than a user property, a
/// protocol error). A bad value is `each`'s own error.
pub(crate) fn properties<'a>(
    r: &mut Reader<'a>,
    field: &'static str,
    limits: &Limits,
    mut each: impl FnMut(u8, &mut Reader<'a>) -> Result<bool, DecodeError>,
) -> Result<(), DecodeError> {
    let len = r.varint(field)?;
    let mut props = r.sub(len, field)?;
    let mut count = 0usize;
    let mut seen = [false; 0x2B];
    while !props.is_empty() {
        count += 1;
        if count > limits.max_properties {
            return Err(DecodeError::FieldTooLong {
                field,
                len: count,
                max: limits.max_properties,
            });
        }
        let id = props.varint(field)?;
        let id = u8::try_from(id).map_err(|_| DecodeError::Malformed { field })?;
        let slot = seen
            .get_mut(usize::from(id))
            .ok_or(DecodeError::Malformed { field })?;
        if *slot && id != USER_PROPERTY {
            return Err(DecodeError::Forbidden { field });
        }
        *slot = true;
        if !each(id, &mut props)? {
            return Err(DecodeError::Malformed { field });
        }
    }
    Ok(())
}

pub(crate) const USER_PROPERTY: u8 = 0x26;

pub(crate) fn user_property(
    r: &mut Reader<'_>,
    limits: &Limits,
    out: &mut Vec<(String, String)>,
) -> Result<(), DecodeError> {
    let field = "user_property";
    let key = r.string(field, limits.max_property_bytes)?;
    let value = r.string(field, limits.max_property_bytes)?;
    if out.len() >= limits.max_user_properties {
        return Err(DecodeError::FieldTooLong {
            field,
            len: out.len() + 1,
            max: limits.max_user_properties,
        });
    }
    out.push((key.to_owned(), value.to_owned()));
    Ok(())
}
