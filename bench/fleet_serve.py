#!/usr/bin/env python3
"""The fleet's live expositions: one HTTP server on 127.0.0.1 answering `GET /metrics?node=N` for
every node of the fleet, with what node N's exporter would expose now (its class's recorded
exposition, continued from the history at the current 30 s step, its own instance id and zone).
Nodes listed in --down answer 503, as an exporter that is down (Prometheus: up == 0).

    fleet_serve.py --model model.json --assign assign.json --start-ms MS --port PORT

Started and stopped by bench/fleet.py. asyncio, keep-alive, one cached body per class and step.
"""

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fleet_model  # noqa: E402


class Bodies:
    def __init__(self, model, start_ms):
        self.classes = model["classes"]
        self.start_ms = start_ms
        self.cache = {}

    def get(self, cls_index, step):
        key = (cls_index, step)
        body = self.cache.get(key)
        if body is None:
            cls = self.classes[cls_index]
            col = fleet_model.values(cls, [step], self.start_ms)[:, 0]
            body = fleet_model.exposition(cls, col).encode()
            if len(self.cache) > 4 * len(self.classes):
                self.cache.clear()
            self.cache[key] = body
        return body


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--assign", required=True)
    ap.add_argument("--start-ms", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    model = json.loads(Path(args.model).read_text())
    assign = json.loads(Path(args.assign).read_text())
    node_class = assign["node_class"]
    down = set(assign["down"])
    bodies = Bodies(model, args.start_ms)
    instance_id = fleet_model.INSTANCE_ID.encode()
    zone = fleet_model.ZONE.encode()
    served = [0]

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0].decode("latin-1")
                try:
                    node = int(line.split(" ")[1].split("node=", 1)[1].split("&")[0])
                    cls = node_class[node]
                except (IndexError, ValueError):
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                if node in down:
                    writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                step = int((time.time() * 1000 - args.start_ms) // 30000)
                body = bodies.get(cls, step)
                body = body.replace(instance_id, fleet_model.node_instance_id(node).encode()).replace(
                    zone, fleet_model.node_zone(node).encode())
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
                served[0] += 1
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = await asyncio.start_server(handle, "127.0.0.1", args.port, backlog=4096)
    print(f"fleet_serve: {len(node_class)} nodes on http://127.0.0.1:{args.port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
