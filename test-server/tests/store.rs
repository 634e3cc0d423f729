//! Store semantics without HTTP: listing, ranges, conditions, copy and
//! multipart validation.

use std::collections::BTreeSet;

use bucketfs_test_server::list::{decode_token, encode_token, url_encode};
use bucketfs_test_server::store::*;
use bytes::Bytes;

const B: &str = "bkt";

fn store_with(keys: &[&str]) -> Store {
    let mut s = Store::new();
    s.create_bucket(B).unwrap();
    for k in keys {
        put(&mut s, k, k.as_bytes());
    }
    s
}

fn put(s: &mut Store, key: &str, data: &[u8]) -> ObjectMeta {
    s.put_object(
        B,
        key,
        Bytes::copy_from_slice(data),
        ObjectAttrs::default(),
        &WriteConditions::default(),
    )
    .unwrap()
}

fn q<'a>(
    prefix: &'a str,
    delimiter: Option<&'a str>,
    after: Option<&'a str>,
    max: usize,
) -> ListQuery<'a> {
    ListQuery {
        prefix,
        delimiter,
        after,
        max_keys: max,
    }
}

/// Lists everything page by page; returns (items in order, page count).
fn list_all(s: &Store, prefix: &str, delimiter: Option<&str>, max: usize) -> (Vec<String>, usize) {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = s
            .list(B, &q(prefix, delimiter, after.as_deref(), max))
            .unwrap();
        pages += 1;
        assert!(page.objects.len() + page.common_prefixes.len() <= max);
        let mut page_items: Vec<String> = page.objects.iter().map(|o| o.key.clone()).collect();
        page_items.extend(page.common_prefixes.iter().cloned());
        page_items.sort();
        items.extend(page_items);
        if !page.is_truncated {
            assert!(page.next_marker.is_none());
            return (items, pages);
        }
        // Round-trip through an opaque token, as the HTTP layer does.
        let token = encode_token(page.next_marker.as_deref().unwrap());
        after = Some(decode_token(&token).unwrap());
        assert!(pages < 1000, "paging does not terminate");
    }
}

#[test]
fn file_dir_and_marker_coexist() {
    let mut s = store_with(&["a", "a/b", "only/child"]);
    put(&mut s, "a/", b"");
    assert_eq!(s.keys(B).unwrap(), ["a", "a/", "a/b", "only/child"]);
    assert_eq!(
        s.object_meta(B, "a/").unwrap().etag,
        "d41d8cd98f00b204e9800998ecf8427e"
    );
    assert_eq!(s.object_meta(B, "only"), Err(StoreError::NoSuchKey));
    assert_eq!(s.object_meta(B, "only/"), Err(StoreError::NoSuchKey));

    let root = s.list(B, &q("", Some("/"), None, 1000)).unwrap();
    assert_eq!(
        root.objects.iter().map(|o| &o.key).collect::<Vec<_>>(),
        ["a"]
    );
    assert_eq!(root.common_prefixes, ["a/", "only/"]);

    let inside = s.list(B, &q("a/", Some("/"), None, 1000)).unwrap();
    assert_eq!(
        inside.objects.iter().map(|o| &o.key).collect::<Vec<_>>(),
        ["a/", "a/b"]
    );
    assert!(inside.common_prefixes.is_empty());
    assert_eq!(
        s.list(B, &q("nothing/", Some("/"), None, 1000)).unwrap(),
        ListPage::default()
    );
}

#[test]
fn common_prefixes_count_once_and_never_repeat_across_pages() {
    let mut keys = Vec::new();
    for d in 0..6 {
        for f in 0..5 {
            keys.push(format!("top/d{d}/f{f}"));
        }
    }
    for f in 0..7 {
        keys.push(format!("top/file{f}"));
    }
    keys.push("top/d2".into()); // a file next to a directory of the same name
    keys.push("top/zz/deep/er".into());
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let s = store_with(&refs);

    let mut want: Vec<String> = (0..6).map(|d| format!("top/d{d}/")).collect();
    want.extend((0..7).map(|f| format!("top/file{f}")));
    want.push("top/d2".into());
    want.push("top/zz/".into());
    want.sort();
    for max in 1..=16 {
        let (items, pages) = list_all(&s, "top/", Some("/"), max);
        assert_eq!(items.len(), want.len(), "max {max}: {items:?}");
        assert_eq!(
            items.iter().collect::<BTreeSet<_>>(),
            want.iter().collect::<BTreeSet<_>>()
        );
        assert_eq!(pages, want.len().div_ceil(max), "max {max}");
    }
    // Without a delimiter every key is listed once.
    for max in [1, 3, 1000] {
        let (items, _) = list_all(&s, "top/", None, max);
        assert_eq!(items, {
            let mut k = keys.clone();
            k.sort();
            k
        });
    }
}

#[test]
fn start_after_and_multichar_delimiter() {
    let s = store_with(&["x/a", "x/b", "x/c", "y--1", "y--2", "y-3"]);
    let page = s.list(B, &q("x/", None, Some("x/a"), 1000)).unwrap();
    assert_eq!(
        page.objects.iter().map(|o| &o.key).collect::<Vec<_>>(),
        ["x/b", "x/c"]
    );
    // start-after before the prefix is the same as none.
    let page = s.list(B, &q("x/", None, Some("a"), 1000)).unwrap();
    assert_eq!(page.objects.len(), 3);
    let page = s.list(B, &q("y", Some("--"), None, 1000)).unwrap();
    assert_eq!(page.common_prefixes, ["y--"]);
    assert_eq!(
        page.objects.iter().map(|o| &o.key).collect::<Vec<_>>(),
        ["y-3"]
    );
    let page = s.list(B, &q("", Some("/"), None, 0)).unwrap();
    assert!(!page.is_truncated && page.objects.is_empty());
}

#[test]
fn unusual_keys() {
    let long = "k".repeat(1024);
    let keys = [
        "sp ace",
        "per%cent",
        "plus+",
        "hash#",
        "ünï/日本",
        "emoji 🎉",
        "ctl\u{1}\u{7f}",
        "dbl//slash",
        "./..",
        &long,
    ];
    let mut s = store_with(&keys);
    for k in keys {
        assert_eq!(s.object_meta(B, k).unwrap().size, k.len() as u64);
    }
    let too_long = "k".repeat(1025);
    assert_eq!(
        s.put_object(
            B,
            &too_long,
            Bytes::new(),
            ObjectAttrs::default(),
            &WriteConditions::default()
        ),
        Err(StoreError::KeyTooLong)
    );
    let page = s.list(B, &q("dbl/", Some("/"), None, 10)).unwrap();
    assert_eq!(page.common_prefixes, ["dbl//"]);
    assert_eq!(url_encode("sp ace/plus+%#é"), "sp+ace/plus%2B%25%23%C3%A9");
    assert!(s.delete_object(B, "emoji 🎉").unwrap());
    assert!(!s.delete_object(B, "emoji 🎉").unwrap());
    assert_eq!(
        s.delete_object("nobucket", "x"),
        Err(StoreError::NoSuchBucket)
    );
}

#[test]
fn ranges() {
    let size = 100;
    assert_eq!(
        ByteRange::parse("bytes=0-9").unwrap().resolve(size),
        Ok(0..10)
    );
    assert_eq!(
        ByteRange::parse("bytes=90-").unwrap().resolve(size),
        Ok(90..100)
    );
    assert_eq!(
        ByteRange::parse("bytes=-10").unwrap().resolve(size),
        Ok(90..100)
    );
    assert_eq!(
        ByteRange::parse("bytes=-1000").unwrap().resolve(size),
        Ok(0..100)
    );
    assert_eq!(
        ByteRange::parse("bytes=95-1000").unwrap().resolve(size),
        Ok(95..100)
    );
    assert_eq!(
        ByteRange::parse("bytes=100-").unwrap().resolve(size),
        Err(StoreError::InvalidRange)
    );
    assert_eq!(
        ByteRange::parse("bytes=-0").unwrap().resolve(size),
        Err(StoreError::InvalidRange)
    );
    assert_eq!(
        ByteRange::parse("bytes=0-").unwrap().resolve(0),
        Err(StoreError::InvalidRange)
    );
    assert_eq!(
        ByteRange::parse("bytes=-5").unwrap().resolve(0),
        Err(StoreError::InvalidRange)
    );
    assert!(ByteRange::parse("bytes=-").is_none());

    let mut s = store_with(&[]);
    put(&mut s, "obj", &[7u8; 100]);
    let (_, r) = s
        .get_object(
            B,
            "obj",
            &ReadConditions::default(),
            Some(ByteRange::Suffix(3)),
        )
        .unwrap();
    assert_eq!(r, Some(97..100));
    assert_eq!(parse_copy_range("bytes=0-99", 100), Ok(0..100));
    assert!(matches!(
        parse_copy_range("bytes=0-100", 100),
        Err(StoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        parse_copy_range("bytes=5-", 100),
        Err(StoreError::InvalidArgument(_))
    ));
}

#[test]
fn read_and_write_conditions() {
    let mut s = store_with(&[]);
    let m = put(&mut s, "k", b"one");
    let none = ReadConditions::default();
    let with = |if_match: Option<&str>, if_none_match: Option<&str>| ReadConditions {
        if_match: if_match.map(EtagCond::parse),
        if_none_match: if_none_match.map(EtagCond::parse),
        ..ReadConditions::default()
    };
    let quoted = m.quoted_etag();
    assert!(s.get_object(B, "k", &none, None).is_ok());
    assert!(s
        .get_object(B, "k", &with(Some(&quoted), None), None)
        .is_ok());
    assert!(s
        .get_object(B, "k", &with(Some(&m.etag), None), None)
        .is_ok());
    assert_eq!(
        s.get_object(B, "k", &with(Some("\"x\""), None), None).err(),
        Some(StoreError::PreconditionFailed)
    );
    assert_eq!(
        s.get_object(B, "k", &with(None, Some(&quoted)), None).err(),
        Some(StoreError::NotModified)
    );
    assert_eq!(
        s.get_object(B, "k", &with(None, Some("*")), None).err(),
        Some(StoreError::NotModified)
    );
    assert_eq!(
        s.get_object(B, "nope", &none, None).err(),
        Some(StoreError::NoSuchKey)
    );

    let data = Bytes::from_static(b"two");
    let a = ObjectAttrs::default;
    let create_only = WriteConditions {
        if_none_match: Some(EtagCond::Any),
        ..WriteConditions::default()
    };
    assert_eq!(
        s.put_object(B, "k", data.clone(), a(), &create_only),
        Err(StoreError::PreconditionFailed)
    );
    assert!(s
        .put_object(B, "new", data.clone(), a(), &create_only)
        .is_ok());
    let cas = |etag: &str| WriteConditions {
        if_match: Some(EtagCond::parse(etag)),
        ..WriteConditions::default()
    };
    assert_eq!(
        s.put_object(B, "k", data.clone(), a(), &cas("\"bad\"")),
        Err(StoreError::PreconditionFailed)
    );
    assert_eq!(
        s.put_object(B, "missing", data.clone(), a(), &cas(&quoted)),
        Err(StoreError::NoSuchKey)
    );
    assert!(s.put_object(B, "k", data, a(), &cas(&quoted)).is_ok());
    assert_eq!(s.object_meta(B, "k").unwrap().etag, md5_hex(b"two"));
}

#[test]
fn copy_object_directives_and_conditions() {
    let mut s = store_with(&[]);
    let attrs = ObjectAttrs {
        content_type: Some("text/plain".into()),
        metadata: [("a".to_owned(), "1".to_owned())].into(),
        ..ObjectAttrs::default()
    };
    let src = s
        .put_object(
            B,
            "src",
            Bytes::from_static(b"data"),
            attrs.clone(),
            &WriteConditions::default(),
        )
        .unwrap();
    let c = s
        .copy_object(B, "src", B, "dst", MetadataDirective::Copy, None, None)
        .unwrap();
    assert_eq!((c.etag.as_str(), &c.attrs), (src.etag.as_str(), &attrs));
    let replaced = ObjectAttrs::default();
    let r = s
        .copy_object(
            B,
            "src",
            B,
            "dst2",
            MetadataDirective::Replace(replaced.clone()),
            None,
            None,
        )
        .unwrap();
    assert_eq!(r.attrs, replaced);
    let bad = EtagCond::parse("\"nope\"");
    assert_eq!(
        s.copy_object(B, "src", B, "d", MetadataDirective::Copy, Some(&bad), None),
        Err(StoreError::PreconditionFailed)
    );
    let good = EtagCond::parse(&src.quoted_etag());
    assert_eq!(
        s.copy_object(B, "src", B, "d", MetadataDirective::Copy, None, Some(&good)),
        Err(StoreError::PreconditionFailed)
    );
    assert!(matches!(
        s.copy_object(B, "src", B, "src", MetadataDirective::Copy, None, None),
        Err(StoreError::InvalidRequest(_))
    ));
    assert!(s
        .copy_object(
            B,
            "src",
            B,
            "src",
            MetadataDirective::Replace(attrs),
            None,
            None
        )
        .is_ok());
    assert_eq!(
        s.copy_object(B, "missing", B, "d", MetadataDirective::Copy, None, None),
        Err(StoreError::NoSuchKey)
    );
}

#[test]
fn multipart_validation() {
    let mut s = store_with(&[]);
    s.min_part_size = 10;
    let up = s
        .create_multipart_upload(B, "mp", ObjectAttrs::default(), false)
        .unwrap();
    let e1 = s
        .upload_part(B, "mp", &up, 1, Bytes::from(vec![1u8; 10]))
        .unwrap();
    let e2 = s
        .upload_part(B, "mp", &up, 2, Bytes::from(vec![2u8; 3]))
        .unwrap();
    let e3 = s
        .upload_part(B, "mp", &up, 3, Bytes::from(vec![3u8; 4]))
        .unwrap();
    let nc = WriteConditions::default();
    assert_eq!(
        s.upload_part(B, "mp", &up, 10_001, Bytes::new())
            .map(|_| ()),
        Err(StoreError::InvalidArgument(
            "Part number must be an integer between 1 and 10000, inclusive".into()
        ))
    );
    assert_eq!(
        s.upload_part(B, "other-key", &up, 1, Bytes::new()),
        Err(StoreError::NoSuchUpload)
    );
    assert!(matches!(
        s.complete_multipart_upload(B, "mp", &up, &[], &Default::default(), &nc),
        Err(StoreError::MalformedXml(_))
    ));
    assert_eq!(
        s.complete_multipart_upload(
            B,
            "mp",
            &up,
            &[(2, e2.clone()), (1, e1.clone())],
            &Default::default(),
            &nc
        ),
        Err(StoreError::InvalidPartOrder)
    );
    assert!(matches!(
        s.complete_multipart_upload(B, "mp", &up, &[(1, e2.clone())], &Default::default(), &nc),
        Err(StoreError::InvalidPart(_))
    ));
    assert!(matches!(
        s.complete_multipart_upload(
            B,
            "mp",
            &up,
            &[(1, e1.clone()), (4, e3.clone())],
            &Default::default(),
            &nc
        ),
        Err(StoreError::InvalidPart(_))
    ));
    // Part 2 (3 bytes) is not last: too small.
    assert_eq!(
        s.complete_multipart_upload(
            B,
            "mp",
            &up,
            &[(1, e1.clone()), (2, e2.clone()), (3, e3.clone())],
            &Default::default(),
            &nc
        ),
        Err(StoreError::EntityTooSmall)
    );
    assert_eq!(s.list_uploads(B, "").unwrap().len(), 1);
    // Skipping part 2 is fine; quoted ETags are accepted.
    let parts = [(1, format!("\"{e1}\"")), (3, e3.clone())];
    let m = s
        .complete_multipart_upload(B, "mp", &up, &parts, &Default::default(), &nc)
        .unwrap();
    let mut md5s = hex::decode(&e1).unwrap();
    md5s.extend(hex::decode(&e3).unwrap());
    assert_eq!(m.etag, format!("{}-2", md5_hex(&md5s)));
    assert_eq!(m.parts_count, Some(2));
    assert_eq!(m.size, 14);
    assert!(s.list_uploads(B, "").unwrap().is_empty());
    // A retried completion gets the same answer; a different part list does not.
    assert_eq!(
        s.complete_multipart_upload(B, "mp", &up, &parts, &Default::default(), &nc)
            .unwrap()
            .etag,
        m.etag
    );
    assert_eq!(
        s.complete_multipart_upload(B, "mp", &up, &parts[..1], &Default::default(), &nc),
        Err(StoreError::NoSuchUpload)
    );

    // Abort, list with prefix, part copy.
    let u1 = s
        .create_multipart_upload(B, "dir/a", ObjectAttrs::default(), false)
        .unwrap();
    let u2 = s
        .create_multipart_upload(B, "other", ObjectAttrs::default(), false)
        .unwrap();
    let listed: Vec<String> = s
        .list_uploads(B, "dir/")
        .unwrap()
        .into_iter()
        .map(|u| u.upload_id)
        .collect();
    assert_eq!(listed, std::slice::from_ref(&u1));
    let (etag, _, _) = s
        .upload_part_copy(B, "dir/a", &u1, 1, B, "mp", Some("bytes=8-11"), None)
        .unwrap();
    assert_eq!(etag, md5_hex(&[1, 1, 3, 3]));
    assert_eq!(
        s.list_parts(B, "dir/a", &u1).unwrap()[0].1.data.as_ref(),
        &[1, 1, 3, 3]
    );
    s.abort_multipart_upload(B, "other", &u2).unwrap();
    assert_eq!(
        s.abort_multipart_upload(B, "other", &u2),
        Err(StoreError::NoSuchUpload)
    );
    assert_eq!(s.delete_bucket(B), Err(StoreError::BucketNotEmpty));
}

#[test]
fn buckets() {
    let mut s = Store::new();
    s.create_bucket("b-one").unwrap();
    assert_eq!(
        s.create_bucket("b-one"),
        Err(StoreError::BucketAlreadyOwnedByYou)
    );
    assert_eq!(
        s.create_bucket("Bad_Name"),
        Err(StoreError::InvalidBucketName)
    );
    assert_eq!(s.head_bucket("nope"), Err(StoreError::NoSuchBucket));
    assert_eq!(s.list_buckets().len(), 1);
    s.delete_bucket("b-one").unwrap();
    assert!(s.list_buckets().is_empty());
}

#[test]
fn content_md5() {
    // base64(md5("abc")) = kAFQmDzST7DWlj99KOF/cg==
    assert_eq!(
        check_content_md5(b"abc", "kAFQmDzST7DWlj99KOF/cg=="),
        Ok(())
    );
    assert_eq!(
        check_content_md5(b"abd", "kAFQmDzST7DWlj99KOF/cg=="),
        Err(StoreError::BadDigest)
    );
    assert!(check_content_md5(b"abc", "!!").is_err());
}

#[test]
fn an_upload_created_for_crc32c_needs_every_parts_checksum_in_the_complete() {
    let mut s = store_with(&[]);
    let body = Bytes::from(vec![7u8; 100]);
    let up = s
        .create_multipart_upload(B, "c", ObjectAttrs::default(), true)
        .unwrap();
    let e = s.upload_part(B, "c", &up, 1, body.clone()).unwrap();
    let parts = [(1, e.clone())];
    let nc = WriteConditions::default();
    let none = std::collections::BTreeMap::new();
    assert!(matches!(
        s.complete_multipart_upload(B, "c", &up, &parts, &none, &nc),
        Err(StoreError::InvalidRequest(_))
    ));
    let wrong = std::collections::BTreeMap::from([(1, "AAAAAA==".to_string())]);
    assert!(matches!(
        s.complete_multipart_upload(B, "c", &up, &parts, &wrong, &nc),
        Err(StoreError::InvalidPart(_))
    ));
    let right = std::collections::BTreeMap::from([(1, crc32c_base64(&body))]);
    s.complete_multipart_upload(B, "c", &up, &parts, &right, &nc)
        .unwrap();
    // a part carrying a CRC32C in an upload created without one is refused
    let plain = s
        .create_multipart_upload(B, "p", ObjectAttrs::default(), false)
        .unwrap();
    assert!(matches!(
        s.insert_part(B, "p", &plain, 1, body, "x".into(), true),
        Err(StoreError::InvalidRequest(_))
    ));
}
