"""Enqueuer: per-campaign dedup, host-grouped batches, nothing lost before enqueue."""

from __future__ import annotations

from redis import Redis
from rq.serializers import JSONSerializer

from arachne.queue import keys
from arachne.queue import stats as st
from arachne.queue.connection import image_queue
from arachne.queue.enqueue import JOB_FUNC, Enqueuer, ImageRef
from arachne.settings import Settings


def _refs(host: str, n: int, campaign: str = "c") -> list[ImageRef]:
    return [ImageRef(f"http://{host}/img/{i}.jpg", f"http://{host}/p", campaign) for i in range(n)]


def _jobs(redis: Redis) -> list[tuple[str, list[dict[str, str]]]]:
    queue = image_queue(redis, Settings())
    assert queue.serializer is JSONSerializer or queue.serializer.__name__ == "JSONSerializer"
    return [(job.args[0], job.args[1]) for job in queue.get_jobs()]


def test_batches_are_capped_and_mix_hosts(redis_client: Redis) -> None:
    queue = image_queue(redis_client, Settings())
    enq = Enqueuer(redis_client, queue, "c", batch_size=10)
    enq.add(_refs("a.example", 4) + _refs("b.example", 24))
    # Full batches went out at once; the rest waits in the buffer.
    assert queue.count == 2 and enq.pending() == 8
    enq.flush()
    jobs = _jobs(redis_client)
    assert [len(p) for _, p in jobs] == [10, 10, 8]
    assert all(campaign == "c" for campaign, _ in jobs)
    hosts = {ref["url"].split("/")[2] for ref in jobs[0][1]}
    assert hosts == {"a.example", "b.example"}, "a batch is not held back for one host"
    assert sum(len(p) for _, p in jobs) == 28
    assert queue.get_jobs()[0].func_name == JOB_FUNC


def test_dedup_within_and_across_enqueuers(redis_client: Redis) -> None:
    queue = image_queue(redis_client, Settings())
    first = Enqueuer(redis_client, queue, "c", batch_size=100)
    assert first.add(_refs("a.example", 5)) == 5
    assert first.add(_refs("a.example", 5)) == 0, "buffered URLs are not added twice"
    first.flush()
    # A resumed crawl (new process) must not queue URLs that are already queued.
    second = Enqueuer(redis_client, queue, "c", batch_size=100)
    assert second.add(_refs("a.example", 7)) == 2
    second.flush()
    urls = [ref["url"] for _, payload in _jobs(redis_client) for ref in payload]
    assert len(urls) == len(set(urls)) == 7
    live = st.Stats(redis_client, "c").get_all()
    assert live[st.IMAGES_QUEUED] == 7 and live[st.IMAGES_DUPLICATE] == 5
    # Another campaign sees the same URLs as new.
    other = Enqueuer(redis_client, queue, "other", batch_size=100)
    assert other.add(_refs("a.example", 3, campaign="other")) == 3
    # So does the campaign's next run: its images are fetched and hashed again.
    run2 = Enqueuer(redis_client, queue, "c", run=2, batch_size=100)
    assert run2.add(_refs("a.example", 7)) == 7
    run2.flush()
    assert st.Stats(redis_client, "c").get_run(2)[st.IMAGES_QUEUED] == 7
    assert st.Stats(redis_client, "c").get_all()[st.IMAGES_QUEUED] == 14, "total of the runs"
    runs = {job.args[2] for job in image_queue(redis_client, Settings()).get_jobs()}
    assert runs == {1, 2}, "each job carries the run that found its images"


def test_buffered_refs_are_not_marked_seen_until_enqueued(redis_client: Redis) -> None:
    queue = image_queue(redis_client, Settings())
    enq = Enqueuer(redis_client, queue, "c", batch_size=100)
    enq.add(_refs("a.example", 4))
    # The crawler dies here, before flush(): nothing is marked seen, so nothing is lost.
    assert redis_client.scard(keys.run_seen("c", 1)) == 0
    again = Enqueuer(redis_client, queue, "c", batch_size=100)
    assert again.add(_refs("a.example", 4)) == 4
    again.flush()
    assert redis_client.scard(keys.run_seen("c", 1)) == 4


def test_the_crawl_pipeline_queues_on_the_campaign_priority(
    redis_url: str, redis_client: Redis
) -> None:
    from arachne.crawler.pipelines import QueuePipeline
    from arachne.crawler.runner import scrapy_settings
    from arachne.crawler.scope import Scope

    settings = Settings()
    scope = Scope.from_json({"allowed_hosts": ["a.example"], "priority": "high"})
    assert Scope.from_json(scope.as_json()).priority == "high"
    assert scrapy_settings(settings, redis_url, "c", scope.priority)["ARACHNE_PRIORITY"] == "high"
    pipeline = QueuePipeline(settings, redis_url, "c", priority=scope.priority)
    pipeline.open_spider()
    for ref in _refs("a.example", 3):
        pipeline.process_item(ref)
    pipeline.close_spider()
    assert image_queue(redis_client, settings, "high").count == 1
    assert image_queue(redis_client, settings).count == 0
