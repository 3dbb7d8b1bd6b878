//! `[history]`: the local SQLite history (the default, set up in
//! `[store]`), or a read-only site view of the site's PostgreSQL database
//! ([`crate::site::SiteConfig`]). A site view runs no sources and no
//! uplinks: its readings are the site's gateways'.

use std::time::Duration;

use super::ConfigError;
use super::raw::RawHistory;
use super::uplink::{HISTORY_KEYS, pg_fields};
use super::validate::Validator;
use crate::site::SiteConfig;
use crate::sources::config::Sources;
use crate::uplink::postgres::Schema;

impl Validator<'_> {
    /// `[history]`, checked against the rest of the file: a site view
    /// keeps no history of its own (what it serves is the site's
    /// gateways'), so it runs no sources and no uplinks.
    pub(super) fn site_view(
        &self,
        r: &RawHistory,
        sources: &Sources,
        sim: bool,
        no_uplinks: bool,
    ) -> Result<Option<SiteConfig>, ConfigError> {
        let site = self.history(r)?;
        if site.is_none() {
            return Ok(None);
        }
        let has_sources = !sources.drivers.is_empty()
            || !sources.serial.is_empty()
            || sources.hwmon.is_some()
            || sim;
        if has_sources {
            return Err(self.invalid(
                "history.backend",
                "is postgres (a read-only site view), which runs no sources: \
                 remove [[driver]], [[serial]], [hwmon] and [sim] (run them on a gateway)",
            ));
        }
        if !no_uplinks {
            return Err(self.invalid(
                "history.backend",
                "is postgres (a read-only site view), which has no history of its own \
                 to send: remove [[uplink]]",
            ));
        }
        Ok(site)
    }

    /// `[history]`: `None` for this box's own history.
    pub(super) fn history(&self, r: &RawHistory) -> Result<Option<SiteConfig>, ConfigError> {
        match r.backend.as_deref() {
            None | Some("sqlite") => {
                let set = r.host.is_some()
                    || r.port.is_some()
                    || r.user.is_some()
                    || r.dbname.is_some()
                    || r.password_file.is_some()
                    || r.tls.is_some()
                    || r.ca_file.is_some()
                    || r.client_cert.is_some()
                    || r.client_key.is_some()
                    || r.table.is_some()
                    || r.max_message_bytes.is_some()
                    || r.timeout_ms.is_some()
                    || r.poll_ms.is_some()
                    || r.max_rows_per_poll.is_some();
                if set {
                    return Err(self.invalid(
                        "history.backend",
                        "is sqlite, but PostgreSQL keys are set: set backend = \"postgres\" \
                         for a site view, or remove them",
                    ));
                }
                return Ok(None);
            }
            Some("postgres") => {}
            Some(_) => {
                return Err(self.invalid("history.backend", "must be \"sqlite\" or \"postgres\""));
            }
        }
        let fields = pg_fields!(r);
        let mut pg = self.pg_connection(&fields, &HISTORY_KEYS)?;
        // Read, never written: the tables must be there as documented.
        pg.schema = Schema::Check;
        pg.partitions = false;
        Ok(Some(SiteConfig {
            pg,
            timeout: self.millis(
                "history.timeout_ms",
                r.timeout_ms,
                Duration::from_secs(10),
                100,
                600_000,
            )?,
            poll: self.millis(
                "history.poll_ms",
                r.poll_ms,
                Duration::from_secs(1),
                100,
                60_000,
            )?,
            max_rows_per_poll: self.size(
                "history.max_rows_per_poll",
                r.max_rows_per_poll,
                10_000,
                100,
                1_000_000,
            )?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::Config;
    use crate::uplink::postgres::Schema;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("t.toml")).map_err(|e| e.to_string())
    }

    const SITE: &str = "[history]\nbackend = \"postgres\"\nhost = \"db.example\"\nuser = \"viewer\"\nca_file = \"ca.pem\"\n";

    #[test]
    fn a_site_view_takes_its_defaults_and_only_checks_the_schema() {
        let c = parse(SITE).unwrap();
        let s = c.site.unwrap();
        assert_eq!(s.pg.port, 5432);
        assert_eq!(s.pg.dbname, "viewer");
        assert_eq!(s.pg.table, "sensegate_readings");
        assert_eq!(s.pg.schema, Schema::Check);
        assert!(s.pg.tls.is_some());
        assert_eq!(s.poll, Duration::from_secs(1));
        assert_eq!(s.timeout, Duration::from_secs(10));
        assert_eq!(s.max_rows_per_poll, 10_000);
        assert!(parse("").unwrap().site.is_none());
        assert!(
            parse("[history]\nbackend = \"sqlite\"\n")
                .unwrap()
                .site
                .is_none()
        );
    }

    #[test]
    fn bad_site_views_are_refused_by_key() {
        for (extra, key) in [
            ("poll_ms = 10\n", "history.poll_ms"),
            ("poll_ms = 60001\n", "history.poll_ms"),
            ("timeout_ms = 1\n", "history.timeout_ms"),
            ("max_rows_per_poll = 10\n", "history.max_rows_per_poll"),
            ("max_rows_per_poll = 1000001\n", "history.max_rows_per_poll"),
            ("max_message_bytes = 100\n", "history.max_message_bytes"),
            ("table = \"x; DROP TABLE y\"\n", "history.table"),
            ("client_key = \"k.pem\"\n", "history.client_cert"),
        ] {
            let e = parse(&format!("{SITE}{extra}")).unwrap_err();
            assert!(e.contains(key), "{extra}: {e}");
        }
        let e = parse(&SITE.replace("host = \"db.example\"\n", "")).unwrap_err();
        assert!(e.contains("history.host"), "{e}");
        let e = parse(&SITE.replace("ca_file = \"ca.pem\"\n", "")).unwrap_err();
        assert!(e.contains("history.ca_file"), "{e}");
        let e = parse("[history]\nbackend = \"mysql\"\n").unwrap_err();
        assert!(e.contains("history.backend"), "{e}");
        for key in [
            "host = \"db\"",
            "timeout_ms = 1000",
            "max_rows_per_poll = 100",
            "tls = false",
        ] {
            let e = parse(&format!("[history]\n{key}\n")).unwrap_err();
            assert!(e.contains("set backend = \"postgres\""), "{key}: {e}");
        }
    }

    #[test]
    fn a_site_view_runs_no_sources_and_no_uplinks() {
        let e = parse(&format!("{SITE}[sim]\nenabled = true\n")).unwrap_err();
        assert!(e.contains("runs no sources"), "{e}");
        let e = parse(&format!(
            "{SITE}[[serial]]\nname = \"gps\"\npath = \"/dev/ttyUSB0\"\nprotocol = \"nmea\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("runs no sources"), "{e}");
        let e = parse(&format!(
            "{SITE}[[uplink]]\nname = \"up\"\nkind = \"postgres\"\nhost = \"db\"\nuser = \"gw\"\nca_file = \"ca.pem\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("remove [[uplink]]"), "{e}");
    }
}
