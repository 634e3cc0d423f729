#!/usr/bin/env python3
"""End-to-end smoke test of bucketfs-test-server with boto3 (real SigV4).

Usage:
    python3 test-server/scripts/smoke.py            # starts target/debug/bucketfs-test-server
    python3 test-server/scripts/smoke.py --bin PATH # another build
Build first: cargo build -p bucketfs-test-server
Exits non-zero on the first failed check.
"""

import argparse
import hashlib
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import boto3
import botocore
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

BUCKET = "demo"
AK, SK = "AKIASMOKE", "smokesecret"
MIB = 1024 * 1024
checks = 0


def ok(cond, what):
    global checks
    checks += 1
    if not cond:
        raise AssertionError(what)


def code_of(fn, *args, **kw):
    """Error code (or 'OK') and HTTP status of a boto3 call."""
    try:
        fn(*args, **kw)
        return "OK", 200
    except ClientError as e:
        return e.response["Error"].get("Code"), e.response["ResponseMetadata"]["HTTPStatusCode"]


def start_server(binary):
    proc = subprocess.Popen(
        [binary, "--port", "0", "--bucket", BUCKET, "--access-key", AK, "--secret-key", SK],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        sys.exit(f"unexpected first line: {line!r}")
    endpoint = line.split()[2]
    ok(line.endswith(f"bucket={BUCKET}"), "banner names the bucket")
    return proc, endpoint


def client(endpoint, secret=SK, access=AK, retries=3):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": retries, "mode": "standard"},
            connect_timeout=5,
            read_timeout=10,
        ),
    )


def control(endpoint, method, cmd, **params):
    url = f"{endpoint}/__control/{cmd}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req) as r:
        return r.read().decode()


def stats(endpoint):
    import json

    return json.loads(control(endpoint, "GET", "stats"))


def signed_get(endpoint, path, query=""):
    """A signed GET built by hand (to see raw responses boto3 would parse)."""
    url = endpoint + path + ("?" + query if query else "")
    req = AWSRequest(method="GET", url=url, headers={"x-amz-content-sha256": hashlib.sha256(b"").hexdigest()})
    S3SigV4Auth(Credentials(AK, SK), "s3", "us-east-1").add_auth(req)
    r = urllib.request.Request(url, headers=dict(req.headers.items()))
    with urllib.request.urlopen(r) as resp:
        return resp.read().decode()


def list_all(s3, **kw):
    keys, prefixes, pages = [], [], 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, **kw):
        pages += 1
        n = len(page.get("Contents", [])) + len(page.get("CommonPrefixes", []))
        if "MaxKeys" in kw.get("PaginationConfig", {}):
            pass
        keys += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        ok(n == page["KeyCount"], "KeyCount counts keys and prefixes")
    return keys, prefixes, pages


def test_buckets(s3):
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    ok(BUCKET in names, "bucket listed")
    s3.head_bucket(Bucket=BUCKET)
    ok(code_of(s3.head_bucket, Bucket="nope-bucket")[1] == 404, "HeadBucket unknown -> 404")
    ok(code_of(s3.list_objects_v2, Bucket="nope-bucket")[0] == "NoSuchBucket", "NoSuchBucket on list")
    ok(code_of(s3.get_object, Bucket="nope-bucket", Key="k")[0] == "NoSuchBucket", "NoSuchBucket on get")
    s3.create_bucket(Bucket="other-bucket")
    ok(code_of(s3.create_bucket, Bucket="other-bucket")[0] == "BucketAlreadyOwnedByYou", "bucket exists")
    s3.delete_bucket(Bucket="other-bucket")


def test_keys(s3):
    for k, body in [("a", b"file"), ("a/", b""), ("a/b", b"nested")]:
        s3.put_object(Bucket=BUCKET, Key=k, Body=body)
    marker = s3.head_object(Bucket=BUCKET, Key="a/")
    ok(marker["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"' and marker["ContentLength"] == 0, "dir marker")
    ok(code_of(s3.head_object, Bucket=BUCKET, Key="x")[1] == 404, "missing key HEAD 404")
    s3.put_object(Bucket=BUCKET, Key="only/child", Body=b"1")
    ok(code_of(s3.head_object, Bucket=BUCKET, Key="only")[1] == 404, "prefix-only HEAD 404")
    ok(code_of(s3.head_object, Bucket=BUCKET, Key="only/")[1] == 404, "prefix-only slash HEAD 404")
    ok(code_of(s3.get_object, Bucket=BUCKET, Key="nokey")[0] == "NoSuchKey", "GET NoSuchKey")
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="a")
    ok([o["Key"] for o in listing["Contents"]] == ["a", "a/", "a/b"], "a, a/, a/b coexist and are listed")
    ok(all(o["ETag"].startswith('"') for o in listing["Contents"]), "ETag in Contents")

    weird = [
        "w/with space",
        "w/per%cent",
        "w/plus+sign",
        "w/hash#tag",
        "w/question?mark",
        "w/amp&eq=semi;",
        "w/ünïcödé/日本語",
        "w/emoji 🎉🚀",
        "w/ctl\x01\x02\x7f",
        "w/tab\tnl\ncr\r",
        "w/double//slash",
        "w/./dot/../dotdot",
        "w/trailing.",
        "w/" + "k" * 1022,
        "w/lt<gt>quote\"apos'",
    ]
    ok(len(weird[13].encode()) == 1024, "1024-byte key")
    for i, k in enumerate(weird):
        s3.put_object(Bucket=BUCKET, Key=k, Body=f"v{i}".encode())
    for i, k in enumerate(weird):
        ok(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() == f"v{i}".encode(), f"round trip {k!r}")
    ok(code_of(s3.put_object, Bucket=BUCKET, Key="w/" + "k" * 1023, Body=b"")[0] == "KeyTooLongError", "1025 bytes")
    keys, _, _ = list_all(s3, Prefix="w/")
    ok(keys == sorted(weird, key=lambda s: s.encode()), "weird keys listed (url-decoded by boto3)")
    raw = s3.list_objects_v2(Bucket=BUCKET, Prefix="w/", EncodingType="url")
    raw_keys = [o["Key"] for o in raw["Contents"]]
    ok("w/with+space" in raw_keys and "w/plus%2Bsign" in raw_keys, "url encoding: space '+', plus %2B")
    ok("w/per%25cent" in raw_keys and "w/hash%23tag" in raw_keys, "url encoding: % and #")
    ok(raw["Prefix"] == "w/", "prefix echoed")
    # Without encoding-type the XML must still be well-formed (control characters as references).
    xml = signed_get(s3.meta.endpoint_url, f"/{BUCKET}", "list-type=2&prefix=w%2Fctl")
    ok("<Key>w/ctl&#1;&#2;\x7f</Key>" in xml, "control characters escaped in XML")
    for k in weird:
        s3.delete_object(Bucket=BUCKET, Key=k)


def test_listing(s3):
    keys = [f"p/d{i}/x{j}" for i in range(7) for j in range(3)] + [f"p/f{i:02}" for i in range(9)]
    keys += ["p/d3", "p/e/", "p/z"]
    for k in keys:
        s3.put_object(Bucket=BUCKET, Key=k, Body=b"x")
    want_prefixes = [f"p/d{i}/" for i in range(7)] + ["p/e/"]
    want_keys = sorted([f"p/f{i:02}" for i in range(9)] + ["p/d3", "p/z"])
    for max_keys in (1, 2, 3, 4, 7, 1000):
        got_keys, got_prefixes, pages = list_all(
            s3, Prefix="p/", Delimiter="/", PaginationConfig={"PageSize": max_keys}
        )
        ok(got_prefixes == want_prefixes, f"common prefixes once each, in order (max {max_keys})")
        ok(sorted(got_keys) == want_keys and len(got_keys) == len(set(got_keys)), f"keys (max {max_keys})")
        expect_pages = -(-(len(want_prefixes) + len(want_keys)) // max_keys)
        ok(pages == expect_pages, f"prefix counts once against max-keys ({pages} vs {expect_pages})")
    page = s3.list_objects_v2(Bucket=BUCKET, Prefix="p/", Delimiter="/", MaxKeys=3)
    ok(page["IsTruncated"] and page["KeyCount"] == 3 and "NextContinuationToken" in page, "truncated page")
    page = s3.list_objects_v2(Bucket=BUCKET, Prefix="p/", StartAfter="p/f05")
    ok([o["Key"] for o in page["Contents"]] == ["p/f06", "p/f07", "p/f08", "p/z"], "start-after")
    everything, _, _ = list_all(s3, Prefix="p/", PaginationConfig={"PageSize": 5})
    ok(everything == sorted(keys), "flat listing across pages")
    # ListObjects v1 with marker paging.
    got = []
    for page in s3.get_paginator("list_objects").paginate(
        Bucket=BUCKET, Prefix="p/", Delimiter="/", PaginationConfig={"PageSize": 2}
    ):
        got += [o["Key"] for o in page.get("Contents", [])] + [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    ok(sorted(got) == sorted(want_keys + want_prefixes) and len(got) == len(set(got)), "v1 paging")
    resp = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in keys]})
    ok(len(resp["Deleted"]) == len(keys), "DeleteObjects reports all")
    ok(s3.list_objects_v2(Bucket=BUCKET, Prefix="p/")["KeyCount"] == 0, "all deleted")


def test_get_head(s3):
    body = bytes(range(256)) * 40
    etag = s3.put_object(
        Bucket=BUCKET, Key="r/obj", Body=body, ContentType="application/x-test", Metadata={"color": "blue", "n": "1"}
    )["ETag"]
    ok(etag == '"%s"' % hashlib.md5(body).hexdigest(), "ETag is quoted md5")
    h = s3.head_object(Bucket=BUCKET, Key="r/obj")
    ok(h["ContentType"] == "application/x-test" and h["Metadata"] == {"color": "blue", "n": "1"}, "metadata")
    ok(h["ContentLength"] == len(body) and "LastModified" in h, "length, last-modified")
    g = s3.get_object(Bucket=BUCKET, Key="r/obj", Range="bytes=10-19")
    ok(g["Body"].read() == body[10:20] and g["ContentRange"] == f"bytes 10-19/{len(body)}", "range a-b")
    ok(s3.get_object(Bucket=BUCKET, Key="r/obj", Range="bytes=10000-")["Body"].read() == body[10000:], "open range")
    ok(s3.get_object(Bucket=BUCKET, Key="r/obj", Range="bytes=-7")["Body"].read() == body[-7:], "suffix range")
    ok(s3.get_object(Bucket=BUCKET, Key="r/obj", Range="bytes=10230-99999")["Body"].read() == body[10230:], "clamp")
    ok(code_of(s3.get_object, Bucket=BUCKET, Key="r/obj", Range=f"bytes={len(body)}-") == ("InvalidRange", 416), "416")
    hr = s3.head_object(Bucket=BUCKET, Key="r/obj", Range="bytes=0-9")
    ok(hr["ContentLength"] == 10 and hr["ResponseMetadata"]["HTTPStatusCode"] == 206, "HEAD with range")
    s3.put_object(Bucket=BUCKET, Key="r/empty", Body=b"")
    ok(code_of(s3.get_object, Bucket=BUCKET, Key="r/empty", Range="bytes=0-")[1] == 416, "range on empty 416")
    ok(s3.get_object(Bucket=BUCKET, Key="r/empty")["Body"].read() == b"", "empty body")
    ok(code_of(s3.get_object, Bucket=BUCKET, Key="r/obj", IfMatch='"nope"')[1] == 412, "If-Match 412")
    ok(s3.get_object(Bucket=BUCKET, Key="r/obj", IfMatch=etag)["Body"].read() == body, "If-Match ok")
    ok(code_of(s3.get_object, Bucket=BUCKET, Key="r/obj", IfNoneMatch=etag)[1] == 304, "If-None-Match 304")
    ok(code_of(s3.head_object, Bucket=BUCKET, Key="r/obj", IfMatch='"nope"')[1] == 412, "HEAD If-Match 412")
    # Conditional writes.
    ok(code_of(s3.put_object, Bucket=BUCKET, Key="r/obj", Body=b"x", IfNoneMatch="*")[1] == 412, "PUT If-None-Match *")
    s3.put_object(Bucket=BUCKET, Key="r/new", Body=b"x", IfNoneMatch="*")
    ok(code_of(s3.put_object, Bucket=BUCKET, Key="r/obj", Body=b"x", IfMatch='"bad"')[1] == 412, "PUT If-Match")
    s3.put_object(Bucket=BUCKET, Key="r/obj", Body=b"y", IfMatch=etag)
    ok(s3.get_object(Bucket=BUCKET, Key="r/obj")["Body"].read() == b"y", "PUT If-Match ok")
    # Content-MD5 is verified.
    import base64

    good = base64.b64encode(hashlib.md5(b"abc").digest()).decode()
    s3.put_object(Bucket=BUCKET, Key="r/md5", Body=b"abc", ContentMD5=good)
    ok(code_of(s3.put_object, Bucket=BUCKET, Key="r/md5", Body=b"abd", ContentMD5=good)[0] == "BadDigest", "md5")


def test_copy_delete(s3):
    s3.put_object(Bucket=BUCKET, Key="c/src key+1", Body=b"copy me", ContentType="text/x", Metadata={"a": "1"})
    src_etag = s3.head_object(Bucket=BUCKET, Key="c/src key+1")["ETag"]
    r = s3.copy_object(Bucket=BUCKET, Key="c/dst", CopySource={"Bucket": BUCKET, "Key": "c/src key+1"})
    ok(r["CopyObjectResult"]["ETag"] == src_etag, "copy keeps ETag")
    h = s3.head_object(Bucket=BUCKET, Key="c/dst")
    ok(h["Metadata"] == {"a": "1"} and h["ContentType"] == "text/x", "COPY directive keeps metadata")
    s3.copy_object(
        Bucket=BUCKET, Key="c/dst2", CopySource={"Bucket": BUCKET, "Key": "c/src key+1"},
        MetadataDirective="REPLACE", Metadata={"b": "2"}, ContentType="text/y",
    )
    h = s3.head_object(Bucket=BUCKET, Key="c/dst2")
    ok(h["Metadata"] == {"b": "2"} and h["ContentType"] == "text/y", "REPLACE directive")
    ok(s3.get_object(Bucket=BUCKET, Key="c/dst2")["Body"].read() == b"copy me", "copied data")
    ok(code_of(s3.copy_object, Bucket=BUCKET, Key="c/d3", CopySource={"Bucket": BUCKET, "Key": "c/src key+1"},
               CopySourceIfMatch='"bad"')[1] == 412, "copy-source-if-match")
    ok(code_of(s3.copy_object, Bucket=BUCKET, Key="c/d3", CopySource={"Bucket": BUCKET, "Key": "c/missing"})[0]
       == "NoSuchKey", "copy missing source")
    ok(code_of(s3.copy_object, Bucket=BUCKET, Key="c/dst", CopySource={"Bucket": BUCKET, "Key": "c/dst"})[0]
       == "InvalidRequest", "copy onto itself without REPLACE")
    s3.copy_object(Bucket=BUCKET, Key="c/dst", CopySource={"Bucket": BUCKET, "Key": "c/dst"},
                   MetadataDirective="REPLACE", Metadata={"c": "3"})
    ok(s3.head_object(Bucket=BUCKET, Key="c/dst")["Metadata"] == {"c": "3"}, "self copy with REPLACE")
    r = s3.delete_object(Bucket=BUCKET, Key="c/never-existed")
    ok(r["ResponseMetadata"]["HTTPStatusCode"] == 204, "delete missing -> 204")
    r = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "c/dst"}, {"Key": "c/ghost"}], "Quiet": True})
    ok(not r.get("Deleted") and not r.get("Errors"), "quiet DeleteObjects")
    ok(code_of(s3.head_object, Bucket=BUCKET, Key="c/dst")[1] == 404, "deleted")


def test_multipart(s3, endpoint):
    key = "m/big file+1"
    p1, p2 = os.urandom(5 * MIB), os.urandom(1000)
    up = s3.create_multipart_upload(Bucket=BUCKET, Key=key, ContentType="video/x", Metadata={"m": "1"})["UploadId"]
    e1 = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=up, PartNumber=1, Body=p1)["ETag"]
    e2 = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=up, PartNumber=2, Body=p2)["ETag"]
    ups = s3.list_multipart_uploads(Bucket=BUCKET, Prefix="m/")["Uploads"]
    ok([(u["Key"], u["UploadId"]) for u in ups] == [(key, up)], "ListMultipartUploads with prefix")
    ok("Uploads" not in s3.list_multipart_uploads(Bucket=BUCKET, Prefix="zzz/"), "prefix filters uploads")
    parts = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=up)["Parts"]
    ok([(p["PartNumber"], p["ETag"], p["Size"]) for p in parts] == [(1, e1, len(p1)), (2, e2, len(p2))], "ListParts")
    bad = code_of(s3.complete_multipart_upload, Bucket=BUCKET, Key=key, UploadId=up,
                  MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]})
    ok(bad[0] == "InvalidPartOrder", f"InvalidPartOrder {bad}")
    bad = code_of(s3.complete_multipart_upload, Bucket=BUCKET, Key=key, UploadId=up,
                  MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e2}, {"PartNumber": 2, "ETag": e2}]})
    ok(bad[0] == "InvalidPart", f"InvalidPart (etag mismatch) {bad}")
    bad = code_of(s3.complete_multipart_upload, Bucket=BUCKET, Key=key, UploadId=up,
                  MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 3, "ETag": e2}]})
    ok(bad[0] == "InvalidPart", f"InvalidPart (missing part) {bad}")
    r = s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=up,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    want = hashlib.md5(hashlib.md5(p1).digest() + hashlib.md5(p2).digest()).hexdigest() + "-2"
    ok(r["ETag"] == f'"{want}"', f"multipart ETag {r['ETag']} vs {want}")
    g = s3.get_object(Bucket=BUCKET, Key=key)
    ok(g["Body"].read() == p1 + p2 and g["ContentType"] == "video/x" and g["Metadata"] == {"m": "1"}, "assembled")
    ok("Uploads" not in s3.list_multipart_uploads(Bucket=BUCKET), "upload gone after complete")

    # Small non-last part -> EntityTooSmall, then allowed after lowering the minimum.
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="m/small")["UploadId"]
    es = [s3.upload_part(Bucket=BUCKET, Key="m/small", UploadId=up, PartNumber=n, Body=b"%d" % n * 10)["ETag"]
          for n in (1, 2)]
    mp = {"Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), es)]}
    ok(code_of(s3.complete_multipart_upload, Bucket=BUCKET, Key="m/small", UploadId=up, MultipartUpload=mp)[0]
       == "EntityTooSmall", "EntityTooSmall")
    control(endpoint, "POST", "min-part-size", bytes=1)
    s3.complete_multipart_upload(Bucket=BUCKET, Key="m/small", UploadId=up, MultipartUpload=mp)
    ok(s3.get_object(Bucket=BUCKET, Key="m/small")["Body"].read() == b"1" * 10 + b"2" * 10, "small parts")

    # UploadPartCopy with a range, abort, NoSuchUpload.
    s3.put_object(Bucket=BUCKET, Key="m/src", Body=b"0123456789")
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="m/pc")["UploadId"]
    c1 = s3.upload_part_copy(Bucket=BUCKET, Key="m/pc", UploadId=up, PartNumber=1,
                             CopySource={"Bucket": BUCKET, "Key": "m/src"}, CopySourceRange="bytes=2-5")
    c2 = s3.upload_part_copy(Bucket=BUCKET, Key="m/pc", UploadId=up, PartNumber=2,
                             CopySource={"Bucket": BUCKET, "Key": "m/src"})
    ok(c1["CopyPartResult"]["ETag"] == '"%s"' % hashlib.md5(b"2345").hexdigest(), "UploadPartCopy ETag")
    bad = code_of(s3.upload_part_copy, Bucket=BUCKET, Key="m/pc", UploadId=up, PartNumber=3,
                  CopySource={"Bucket": BUCKET, "Key": "m/src"}, CopySourceRange="bytes=5-10")
    ok(bad[0] == "InvalidArgument", f"copy range out of bounds {bad}")
    s3.complete_multipart_upload(Bucket=BUCKET, Key="m/pc", UploadId=up, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": c1["CopyPartResult"]["ETag"]},
        {"PartNumber": 2, "ETag": c2["CopyPartResult"]["ETag"]}]})
    ok(s3.get_object(Bucket=BUCKET, Key="m/pc")["Body"].read() == b"23450123456789", "part copy data")
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="m/aborted")["UploadId"]
    s3.upload_part(Bucket=BUCKET, Key="m/aborted", UploadId=up, PartNumber=1, Body=b"x")
    s3.abort_multipart_upload(Bucket=BUCKET, Key="m/aborted", UploadId=up)
    ok(code_of(s3.upload_part, Bucket=BUCKET, Key="m/aborted", UploadId=up, PartNumber=2, Body=b"y")[0]
       == "NoSuchUpload", "NoSuchUpload after abort")
    ok(code_of(s3.abort_multipart_upload, Bucket=BUCKET, Key="m/aborted", UploadId=up)[0] == "NoSuchUpload",
       "abort twice")
    ok(code_of(s3.upload_part, Bucket=BUCKET, Key="m/aborted", UploadId="bogus", PartNumber=1, Body=b"y")[0]
       == "NoSuchUpload", "bogus upload id")
    control(endpoint, "POST", "min-part-size", bytes=5 * MIB)


def test_auth(endpoint):
    bad = client(endpoint, secret="wrong-secret", retries=1)
    ok(code_of(bad.list_objects_v2, Bucket=BUCKET) == ("SignatureDoesNotMatch", 403), "wrong secret -> 403")
    ok(code_of(bad.put_object, Bucket=BUCKET, Key="x", Body=b"1")[0] == "SignatureDoesNotMatch", "wrong secret put")
    unknown = client(endpoint, access="AKIAUNKNOWN", retries=1)
    ok(code_of(unknown.list_objects_v2, Bucket=BUCKET)[0] == "InvalidAccessKeyId", "unknown access key")
    req = urllib.request.Request(f"{endpoint}/{BUCKET}?list-type=2")
    try:
        urllib.request.urlopen(req)
        ok(False, "anonymous must be rejected")
    except urllib.error.HTTPError as e:
        ok(e.code == 403, "anonymous -> 403")


def test_faults(endpoint):
    s3 = client(endpoint, retries=1)
    s3.put_object(Bucket=BUCKET, Key="f/obj", Body=b"z" * 100000)
    control(endpoint, "POST", "fault", op="GetObject", kind="status", status=503, code="SlowDown", times=1)
    ok(code_of(s3.get_object, Bucket=BUCKET, Key="f/obj") == ("SlowDown", 503), "503 SlowDown injected")
    ok(len(s3.get_object(Bucket=BUCKET, Key="f/obj")["Body"].read()) == 100000, "fault retired after times=1")
    control(endpoint, "POST", "fault", op="PutObject", key_prefix="f/deny", kind="status", status=403,
            code="AccessDenied")
    ok(code_of(s3.put_object, Bucket=BUCKET, Key="f/deny/x", Body=b"1")[0] == "AccessDenied", "key_prefix match")
    s3.put_object(Bucket=BUCKET, Key="f/other", Body=b"1")
    control(endpoint, "POST", "clear-faults")

    control(endpoint, "POST", "fault", op="HeadObject", kind="drop", times=1)
    try:
        s3.head_object(Bucket=BUCKET, Key="f/obj")
        ok(False, "dropped connection must fail")
    except (botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectionError):
        ok(True, "drop")
    control(endpoint, "POST", "fault", op="GetObject", kind="truncate", times=1)
    try:
        data = s3.get_object(Bucket=BUCKET, Key="f/obj")["Body"].read()
        ok(False, f"truncated body must fail, got {len(data)} bytes")
    except (botocore.exceptions.ResponseStreamingError, botocore.exceptions.IncompleteReadError) as e:
        ok(True, f"truncate: {type(e).__name__}")
    control(endpoint, "POST", "fault", op="PutObject", kind="truncate", times=1)
    try:
        s3.put_object(Bucket=BUCKET, Key="f/applied", Body=b"applied")
        ok(False, "lost response must fail")
    except (botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectionError):
        ok(True, "truncate on body-less response drops the connection")
    ok(s3.get_object(Bucket=BUCKET, Key="f/applied")["Body"].read() == b"applied", "...after applying it")
    control(endpoint, "POST", "fault", op="HeadObject", kind="delay", ms=700, times=1)
    t = time.time()
    s3.head_object(Bucket=BUCKET, Key="f/obj")
    ok(time.time() - t >= 0.6, "delay")
    control(endpoint, "POST", "fault", op="CompleteMultipartUpload", kind="error200", code="InternalError", times=1)
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="f/mp")["UploadId"]
    e = s3.upload_part(Bucket=BUCKET, Key="f/mp", UploadId=up, PartNumber=1, Body=b"x")["ETag"]
    mp = {"Parts": [{"PartNumber": 1, "ETag": e}]}
    ok(code_of(s3.complete_multipart_upload, Bucket=BUCKET, Key="f/mp", UploadId=up, MultipartUpload=mp)[0]
       == "InternalError", "200 with error body")
    s3.complete_multipart_upload(Bucket=BUCKET, Key="f/mp", UploadId=up, MultipartUpload=mp)
    r = s3.complete_multipart_upload(Bucket=BUCKET, Key="f/mp", UploadId=up, MultipartUpload=mp)
    ok(r["ETag"].endswith('-1"'), "retried completion of a completed upload succeeds")

    control(endpoint, "POST", "random", probability=0.5, seed=7, ops="HeadObject")
    before = stats(endpoint)["faults_injected"]
    failures = 0
    for _ in range(40):
        try:
            s3.head_object(Bucket=BUCKET, Key="f/obj")
        except Exception:
            failures += 1
    injected = stats(endpoint)["faults_injected"] - before
    ok(10 <= injected <= 30 and failures <= injected, f"random faults ({injected} injected, {failures} failed)")
    control(endpoint, "POST", "clear-faults")
    # With retries a client gets through a fault storm.
    control(endpoint, "POST", "random", probability=0.3, seed=11)
    patient = client(endpoint, retries=10)
    for i in range(10):
        patient.put_object(Bucket=BUCKET, Key=f"f/storm{i}", Body=b"s" * 1000)
    control(endpoint, "POST", "clear-faults")
    for i in range(10):
        ok(s3.get_object(Bucket=BUCKET, Key=f"f/storm{i}")["Body"].read() == b"s" * 1000, "storm writes landed")


def test_stats(endpoint, s3):
    control(endpoint, "POST", "reset-stats")
    s3.put_object(Bucket=BUCKET, Key="s/x", Body=b"q" * 5000)
    s3.get_object(Bucket=BUCKET, Key="s/x")["Body"].read()
    s3.list_objects_v2(Bucket=BUCKET, Prefix="s/")
    st = stats(endpoint)
    ok(st["counts"] == {"PutObject": 1, "GetObject": 1, "ListObjectsV2": 1}, f"counts {st['counts']}")
    ok(st["bytes_received"] >= 5000 and st["bytes_sent"] >= 5000, f"bytes {st}")


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--bin", default=os.path.join(here, "..", "..", "target", "debug", "bucketfs-test-server"))
    args = ap.parse_args()
    proc, endpoint = start_server(args.bin)
    try:
        s3 = client(endpoint)
        for name, fn in [
            ("buckets", lambda: test_buckets(s3)),
            ("keys", lambda: test_keys(s3)),
            ("listing", lambda: test_listing(s3)),
            ("get/head/conditionals", lambda: test_get_head(s3)),
            ("copy/delete", lambda: test_copy_delete(s3)),
            ("multipart", lambda: test_multipart(s3, endpoint)),
            ("auth", lambda: test_auth(endpoint)),
            ("faults", lambda: test_faults(endpoint)),
            ("stats", lambda: test_stats(endpoint, s3)),
        ]:
            fn()
            print(f"ok   {name}")
        mism = stats(endpoint)["op_mismatches"]
        ok(mism == 0, f"{mism} operation-name mismatches between the server's classifier and s3s")
        print(f"all {checks} checks passed")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
