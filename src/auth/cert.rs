//! The identity in a client certificate: its subject's common name (CN), which becomes the
//! client's user name with COREMQ_TLS_IDENTITY_AS_USERNAME (Mosquitto's
//! `use_identity_as_username`). The certificate was verified by the TLS layer already; this only
//! walks its DER to the subject, so it needs no X.509 library.
//!
//! Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
//! signature, issuer, validity, subject Name, ... }, ... }, Name ::= SEQUENCE OF SET OF
//! SEQUENCE { type OID, value string } (RFC 5280 section 4.1).

/// OID 2.5.4.3 (id-at-commonName), DER-encoded.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// The subject's common name (the first one, if several, as Mosquitto takes it), as text;
/// `None` when the certificate has none or does not parse.
pub fn subject_common_name(der: &[u8]) -> Option<String> {
    let (cert, _) = tlv(der, SEQUENCE)?;
    let (tbs, _) = tlv(cert, SEQUENCE)?;
    let mut rest = tbs;
    // [0] EXPLICIT version, when present.
    if rest.first() == Some(&0xa0) {
        rest = any(rest)?.1;
    }
    // serialNumber, signature, issuer, validity.
    for _ in 0..4 {
        rest = any(rest)?.1;
    }
    let (mut name, _) = tlv(rest, SEQUENCE)?;
    let mut found = None;
    while !name.is_empty() {
        let (mut rdn, next) = tlv(name, SET)?;
        name = next;
        while !rdn.is_empty() {
            let (attr, next) = tlv(rdn, SEQUENCE)?;
            rdn = next;
            let (oid, value) = tlv(attr, OID)?;
            if oid == COMMON_NAME && found.is_none() {
                found = Some(text(value)?);
            }
        }
    }
    found
}

/// A string value: UTF8String, PrintableString, IA5String, TeletexString (taken as Latin-1) or
/// BMPString.
fn text(value: &[u8]) -> Option<String> {
    let tag = *value.first()?;
    let (body, _) = any(value)?;
    match tag {
        0x0c | 0x13 | 0x16 => String::from_utf8(body.to_vec()).ok(),
        0x14 => Some(body.iter().map(|&b| char::from(b)).collect()),
        0x1e => {
            let units: Vec<u16> = body
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// The element at the front of `der` if its tag is `tag`: (contents, what follows).
fn tlv(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *der.first()? != tag {
        return None;
    }
    any(der)
}

/// The element at the front of `der`, whatever its (single-byte) tag.
fn any(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let first = *der.get(1)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = der.get(2..2 + n)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, 2 + n)
    };
    let end = head.checked_add(len)?;
    Some((der.get(head..end)?, der.get(end..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(dn: rcgen::DistinguishedName) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name = dn;
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn common_name_of_rcgen_certificates() {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, "coremq tests");
        dn.push(rcgen::DnType::CommonName, "sensor-17");
        dn.push(rcgen::DnType::CountryName, "DE");
        assert_eq!(
            subject_common_name(&cert_with(dn)).as_deref(),
            Some("sensor-17")
        );

        let mut dn = rcgen::DistinguishedName::new();
        dn.push(
            rcgen::DnType::CommonName,
            rcgen::DnValue::PrintableString("device 9".try_into().unwrap()),
        );
        assert_eq!(
            subject_common_name(&cert_with(dn)).as_deref(),
            Some("device 9")
        );

        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, "no common name");
        assert_eq!(subject_common_name(&cert_with(dn)), None);
    }

    #[test]
    fn garbage_is_no_name() {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "x");
        let der = cert_with(dn);
        for cut in 0..der.len() {
            // Truncated certificates never panic; most have no name.
            let _ = subject_common_name(&der[..cut]);
        }
        assert_eq!(subject_common_name(b""), None);
        assert_eq!(
            subject_common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
            None
        );
    }
}
