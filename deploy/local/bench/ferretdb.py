"""Times FerretDB operations at growing collection sizes (the numbers in deploy/local/README.md).

    python3 -m venv /tmp/pm && /tmp/pm/bin/pip install pymongo
    /tmp/pm/bin/python deploy/local/bench/ferretdb.py [port=27017] [sizes=1000,20000] [label]

Uses a new database bench_<random> (dropped at the end): a `posts` collection of ~220-byte
documents indexed on `author_id`. Per size: find_one / update_one / upsert by `_id`, insert_one,
and a find on `author_id` sorted by `_id` desc, limit 20, with 400 matches per author at 20k
documents (50 authors); then, at 20,000 documents with 20 matches per author (1,000 authors),
the same find and a count. Means over 50 (finds on author_id: 20-30) operations, one client.
"""
import random
import sys
import time
import uuid

import pymongo

port = int(sys.argv[1]) if len(sys.argv) > 1 else 27017
sizes = [int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "1000,20000").split(",")]
label = sys.argv[3] if len(sys.argv) > 3 else str(port)
client = pymongo.MongoClient(f"mongodb://127.0.0.1:{port}", directConnection=True)
db = client["bench_" + uuid.uuid4().hex[:8]]


def timed(f, reps=50):
    f()  # warm up (prepared statements, caches)
    start = time.perf_counter()
    for _ in range(reps):
        f()
    return (time.perf_counter() - start) / reps * 1000


def report(name, ms):
    print(f"[{label}]   {name:44s} {ms:8.2f} ms")


try:
    posts = db["posts"]
    posts.create_index("author_id")
    authors = [f"user:{uuid.uuid4()}" for _ in range(50)]
    ids = []

    def fill(to):
        batch = []
        while len(ids) < to:
            n = len(ids) + 1
            d = {"_id": f"post:{n:08d}:{uuid.uuid4().hex[:6]}", "author_id": authors[n % len(authors)],
                 "body": "hello world " * 8, "likes": 0, "v": 1, "state": {"a": 1, "tags": ["x", "y"]}}
            ids.append(d["_id"])
            batch.append(d)
            if len(batch) == 500:
                posts.insert_many(batch)
                batch = []
        if batch:
            posts.insert_many(batch)

    for size in sizes:
        fill(size)
        print(f"[{label}] docs={posts.estimated_document_count()}")
        report("find_one {_id}", timed(lambda: posts.find_one({"_id": random.choice(ids)})))
        report("find_one {_id} (no such id)", timed(lambda: posts.find_one({"_id": "post:none:" + uuid.uuid4().hex})))
        report("update_one {_id} $set/$inc", timed(lambda: posts.update_one(
            {"_id": random.choice(ids)}, {"$set": {"likes": random.randint(0, 9)}, "$inc": {"v": 1}})))
        report("update_one {_id} $set upsert (new)", timed(lambda: posts.update_one(
            {"_id": "h:" + uuid.uuid4().hex}, {"$set": {"v": 1}}, upsert=True)))
        report("insert_one", timed(lambda: posts.insert_one({"_id": "i:" + uuid.uuid4().hex, "author_id": "x", "body": "x"})))
        report(f"find {{author_id}} sort _id -1 limit 20 ({size // len(authors)}/author)", timed(
            lambda: list(posts.find({"author_id": random.choice(authors)}).sort("_id", -1).limit(20)), reps=20))

    few = db["few"]
    few.create_index("author_id")
    many = [f"user:{uuid.uuid4()}" for _ in range(1000)]
    few.insert_many([{"_id": f"post:{i:08d}", "author_id": many[i % 1000], "body": "hello world " * 8} for i in range(20000)])
    print(f"[{label}] docs=20000, 20 per author")
    report("find {author_id} sort _id -1 limit 20", timed(
        lambda: list(few.find({"author_id": random.choice(many)}).sort("_id", -1).limit(20)), reps=30))
    report("count_documents {author_id}", timed(lambda: few.count_documents({"author_id": random.choice(many)}), reps=30))
finally:
    client.drop_database(db.name)
