"""Receive-rate benchmark for a Python client built the way the seeds are (python-reverb):
websockets' asyncio client, json.loads of every frame and of its string `data`, handlers
looked up by event name and run with one asyncio.create_task per message.

Usage: python3 bench/python_recv.py HOST:PORT EVENTS PAYLOAD
"""
import asyncio
import json
import resource
import sys
import time

import websockets


async def main(addr: str, events: int, payload: int) -> None:
    state = {"received": -1, "started": 0.0, "cpu0": 0.0, "done": asyncio.Event()}

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    async def on_tick(event: str, data, channel: str) -> None:
        state["received"] += 1
        if state["received"] == 0:
            state["started"], state["cpu0"] = time.perf_counter(), cpu()
        elif state["received"] == events:
            state["done"].set()

    handlers = {"tick": [on_tick]}
    async with websockets.connect(f"ws://{addr}/app/bench?protocol=7", max_size=None) as ws:
        await ws.recv()  # pusher:connection_established
        await ws.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": "bench"}}))
        tasks = set()
        while not state["done"].is_set():
            message = json.loads(await ws.recv())
            data = message.get("data")
            if isinstance(data, str):
                try:
                    data = json.loads(data)
                except ValueError:
                    pass
            for handler in handlers.get(message.get("event"), []):
                task = asyncio.create_task(handler(message["event"], data, message.get("channel")))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if len(tasks) > 10_000:
                await asyncio.sleep(0)
    secs = time.perf_counter() - state["started"]
    cpu_secs = cpu() - state["cpu0"]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{'python websockets':<22} payload={payload:<5} events={events:<8} {events / secs:>10.0f} events/s  "
          f"{cpu_secs / (events / 1e6):>6.2f} CPU s per million  peak RSS {rss:>7} KiB")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
