//! NMEA 0183 sentences from GPS receivers, without I/O: the checksum is
//! verified, then GGA (fix data) and RMC (recommended minimum) are read.
//! Other sentence types are ignored. A sentence is at most 82 bytes by the
//! standard; longer ones are refused.
//!
//! Readings a sentence yields, as `(suffix, value)`:
//! - GGA: `fix` (quality 0 to 8), `satellites`, and with a fix `lat`, `lon`
//!   (decimal degrees, south and west negative), `altitude` (m), `hdop`;
//! - RMC: with status A (valid), `lat`, `lon`, `speed` (m/s), `course`
//!   (degrees, when given).

/// Longest sentence accepted, `$` to checksum, by the standard.
pub const MAX_SENTENCE: usize = 82;

/// Why a sentence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NmeaError {
    /// Not `$...*hh`.
    #[error("not an NMEA sentence")]
    Framing,
    /// Over [`MAX_SENTENCE`] bytes.
    #[error("the sentence is longer than {MAX_SENTENCE} bytes")]
    TooLong,
    /// The checksum does not match.
    #[error("checksum mismatch")]
    Checksum,
    /// A field is malformed.
    #[error("field {0} is malformed")]
    Field(usize),
}

/// Parses one sentence (without its line ending) into readings. Sentence
/// types other than GGA and RMC give none.
///
/// # Errors
/// [`NmeaError`].
pub fn parse(line: &[u8]) -> Result<Vec<(&'static str, f64)>, NmeaError> {
    if line.len() > MAX_SENTENCE {
        return Err(NmeaError::TooLong);
    }
    let text = std::str::from_utf8(line).map_err(|_| NmeaError::Framing)?;
    let body = text.strip_prefix('$').ok_or(NmeaError::Framing)?;
    let (body, checksum) = body.rsplit_once('*').ok_or(NmeaError::Framing)?;
    if checksum.len() != 2 {
        return Err(NmeaError::Framing);
    }
    let expected = u8::from_str_radix(checksum, 16).map_err(|_| NmeaError::Framing)?;
    if body.bytes().fold(0u8, |acc, b| acc ^ b) != expected {
        return Err(NmeaError::Checksum);
    }
    let fields: Vec<&str> = body.split(',').collect();
    let kind = fields[0];
    // A talker (GP, GN, GL, ...) then the type.
    if kind.len() != 5 || !kind.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(NmeaError::Field(0));
    }
    match &kind[2..] {
        "GGA" => gga(&fields),
        "RMC" => rmc(&fields),
        _ => Ok(Vec::new()),
    }
}

fn get<'a>(fields: &[&'a str], i: usize) -> Result<&'a str, NmeaError> {
    fields.get(i).copied().ok_or(NmeaError::Field(i))
}

fn number(fields: &[&str], i: usize) -> Result<Option<f64>, NmeaError> {
    let s = get(fields, i)?;
    if s.is_empty() {
        return Ok(None);
    }
    let v: f64 = s.parse().map_err(|_| NmeaError::Field(i))?;
    if v.is_finite() {
        Ok(Some(v))
    } else {
        Err(NmeaError::Field(i))
    }
}

/// `ddmm.mmmm` (or `dddmm.mmmm`) and a hemisphere to signed decimal degrees.
fn coordinate(fields: &[&str], i: usize, max_degrees: f64) -> Result<Option<f64>, NmeaError> {
    let Some(raw) = number(fields, i)? else {
        return Ok(None);
    };
    let degrees = (raw / 100.0).trunc();
    let minutes = raw - degrees * 100.0;
    if raw < 0.0 || minutes >= 60.0 {
        return Err(NmeaError::Field(i));
    }
    let value = degrees + minutes / 60.0;
    if value > max_degrees {
        return Err(NmeaError::Field(i));
    }
    let positive = ["N", "E"];
    let negative = ["S", "W"];
    match get(fields, i + 1)? {
        h if positive.contains(&h) => Ok(Some(value)),
        h if negative.contains(&h) => Ok(Some(-value)),
        _ => Err(NmeaError::Field(i + 1)),
    }
}

fn gga(f: &[&str]) -> Result<Vec<(&'static str, f64)>, NmeaError> {
    let fix = number(f, 6)?.ok_or(NmeaError::Field(6))?;
    if !(0.0..=8.0).contains(&fix) || fix.fract() != 0.0 {
        return Err(NmeaError::Field(6));
    }
    let mut out = vec![("fix", fix)];
    if let Some(sats) = number(f, 7)? {
        out.push(("satellites", sats));
    }
    if fix > 0.0 {
        if let (Some(lat), Some(lon)) = (coordinate(f, 2, 90.0)?, coordinate(f, 4, 180.0)?) {
            out.push(("lat", lat));
            out.push(("lon", lon));
        }
        if let Some(hdop) = number(f, 8)? {
            out.push(("hdop", hdop));
        }
        if let Some(alt) = number(f, 9)? {
            out.push(("altitude", alt));
        }
    }
    Ok(out)
}

fn rmc(f: &[&str]) -> Result<Vec<(&'static str, f64)>, NmeaError> {
    match get(f, 2)? {
        "A" => {}
        "V" => return Ok(Vec::new()),
        _ => return Err(NmeaError::Field(2)),
    }
    let mut out = Vec::new();
    if let (Some(lat), Some(lon)) = (coordinate(f, 3, 90.0)?, coordinate(f, 5, 180.0)?) {
        out.push(("lat", lat));
        out.push(("lon", lon));
    }
    if let Some(knots) = number(f, 7)? {
        out.push(("speed", knots * 1852.0 / 3600.0));
    }
    if let Some(course) = number(f, 8)? {
        out.push(("course", course));
    }
    Ok(out)
}

/// The unit of a reading suffix.
#[must_use]
pub fn unit(suffix: &str) -> &'static str {
    match suffix {
        "lat" | "lon" | "course" => "deg",
        "altitude" => "m",
        "speed" => "m/s",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends the right checksum to `$body`.
    fn sentence(body: &str) -> String {
        let sum = body.bytes().fold(0u8, |a, b| a ^ b);
        format!("${body}*{sum:02X}")
    }

    fn get(rs: &[(&str, f64)], k: &str) -> f64 {
        rs.iter().find(|(n, _)| *n == k).unwrap().1
    }

    #[test]
    fn a_real_gga_sentence() {
        // From the NMEA reference (checksum as shipped by receivers).
        let rs =
            parse(b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47").unwrap();
        assert!((get(&rs, "lat") - 48.1173).abs() < 1e-9);
        assert!((get(&rs, "lon") - 11.516_666_666).abs() < 1e-6);
        assert!((get(&rs, "fix") - 1.0).abs() < f64::EPSILON);
        assert!((get(&rs, "satellites") - 8.0).abs() < f64::EPSILON);
        assert!((get(&rs, "altitude") - 545.4).abs() < 1e-9);
        assert!((get(&rs, "hdop") - 0.9).abs() < 1e-9);
    }

    #[test]
    fn rmc_south_west_and_void() {
        let s = sentence("GNRMC,081836,A,3751.65,S,14507.36,W,10.0,360.0,130998,011.3,E");
        let rs = parse(s.as_bytes()).unwrap();
        assert!(get(&rs, "lat") < -37.0 && get(&rs, "lon") < -145.0);
        assert!((get(&rs, "speed") - 5.144_444).abs() < 1e-5);
        let void = sentence("GPRMC,081836,V,,,,,,,130998,,");
        assert!(parse(void.as_bytes()).unwrap().is_empty());
    }

    #[test]
    fn no_fix_gives_only_the_fix_quality() {
        let s = sentence("GPGGA,123519,,,,,0,00,,,M,,M,,");
        let rs = parse(s.as_bytes()).unwrap();
        assert_eq!(rs.len(), 2);
        assert!(get(&rs, "fix").abs() < f64::EPSILON);
    }

    #[test]
    fn bad_sentences_are_refused() {
        let good = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47";
        assert_eq!(
            parse(&good.as_bytes()[..good.len() - 1]),
            Err(NmeaError::Framing)
        );
        assert_eq!(
            parse(good.replace("*47", "*48").as_bytes()),
            Err(NmeaError::Checksum)
        );
        assert_eq!(parse(b"GPGGA,1*00"), Err(NmeaError::Framing));
        assert_eq!(parse(&[b'$'; 83]), Err(NmeaError::TooLong));
        let bad_lat = sentence("GPGGA,1,9999.0,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,");
        assert_eq!(parse(bad_lat.as_bytes()), Err(NmeaError::Field(2)));
        let bad_hemi = sentence("GPGGA,1,4807.038,Q,01131.000,E,1,08,0.9,545.4,M,46.9,M,,");
        assert_eq!(parse(bad_hemi.as_bytes()), Err(NmeaError::Field(3)));
        let bad_fix = sentence("GPGGA,1,4807.038,N,01131.000,E,9,08,0.9,545.4,M,46.9,M,,");
        assert_eq!(parse(bad_fix.as_bytes()), Err(NmeaError::Field(6)));
        let nan = sentence("GPGGA,1,4807.038,N,01131.000,E,1,08,NaN,545.4,M,46.9,M,,");
        assert_eq!(parse(nan.as_bytes()), Err(NmeaError::Field(8)));
        // Other types are fine and say nothing.
        assert!(
            parse(sentence("GPGSV,1,1,00").as_bytes())
                .unwrap()
                .is_empty()
        );
    }
}
