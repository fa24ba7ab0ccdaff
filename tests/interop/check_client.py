#!/usr/bin/env python3
"""Self-check for aiortc_whep.py: pull audio from it with an aiortc WHEP client.

Why: the interop acceptance test relies on aiortc_whep.py being a correct WHEP source; this
proves it independently of whep-bridge (POST offer -> 201 answer -> ICE/DTLS/SRTP -> Opus
frames -> DELETE). The offer is rewritten to look like whep-bridge's (payload type 111,
fmtp minptime=10;useinbandfec=1;stereo=1;sprop-stereo=1, recvonly, all candidates inline)
so the server is exercised with that kind of offer.

Usage: python check_client.py --url http://127.0.0.1:PORT/whep/NAME [--seconds 3]
           [--expect-left 440 --expect-right 660]
Prints one line per fact and a final "frames=.. sample_rate=.. channels=.." summary;
exits non-zero when no audio arrived or the tones are not the expected ones.
"""

import argparse
import asyncio
import re
import sys
import time
import urllib.parse
import urllib.request

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

PRODUCT_FMTP = "minptime=10;useinbandfec=1;stereo=1;sprop-stereo=1"


def like_whep_bridge(sdp: str) -> str:
    """Rewrite aiortc's offer to use Opus on payload type 111 with whep-bridge's fmtp."""
    m = re.search(r"a=rtpmap:(\d+) opus/48000/2", sdp)
    if m is None:
        raise SystemExit("offer has no opus/48000/2")
    pt = m.group(1)
    lines = []
    for line in sdp.splitlines():
        if line.startswith("m=audio"):
            head = line.split()[:3]
            line = " ".join(head + ["111"])
        elif line.startswith(f"a=rtpmap:{pt} "):
            line = "a=rtpmap:111 opus/48000/2"
            lines.append(line)
            line = f"a=fmtp:111 {PRODUCT_FMTP}"
        elif re.match(r"a=(rtpmap|fmtp|rtcp-fb):\d+", line):
            continue  # drop the other codecs, as the product offers Opus only
        lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def http(method: str, url: str, body: bytes = b"", ctype: str = "") -> tuple:
    req = urllib.request.Request(url, data=body or None, method=method)
    if ctype:
        req.add_header("Content-Type", ctype)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, dict(resp.headers), resp.read().decode()


def zero_cross_hz(samples: list, rate: int) -> float:
    """Frequency of a steady sine from the spacing of its first and last rising zero crossing."""
    ups = []
    for i in range(1, len(samples)):
        a, b = samples[i - 1], samples[i]
        if a < 0 <= b:
            ups.append(i - 1 + (-a) / (b - a))
    if len(ups) < 2:
        return 0.0
    return (len(ups) - 1) * rate / (ups[-1] - ups[0])


async def run(url: str, seconds: float, expect: tuple) -> int:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="recvonly")
    got_track: asyncio.Future = asyncio.get_running_loop().create_future()

    @pc.on("track")
    def on_track(track) -> None:
        if not got_track.done():
            got_track.set_result(track)

    await pc.setLocalDescription(await pc.createOffer())
    offer = like_whep_bridge(pc.localDescription.sdp)
    status, headers, answer = await asyncio.to_thread(
        http, "POST", url, offer.encode(), "application/sdp"
    )
    location = headers.get("Location", "")
    print(f"POST status={status} content-type={headers.get('Content-Type')} location={location}")
    for line in answer.splitlines():
        if line.startswith(("a=rtpmap", "a=fmtp", "a=sendonly", "a=recvonly", "a=setup",
                            "a=candidate", "m=audio")):
            print(f"  answer: {line}")
    if status != 201 or not location:
        return 1
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    track = await asyncio.wait_for(got_track, 10)
    frames = 0
    rates, layouts, formats = set(), set(), set()
    left, right = [], []
    t0 = time.monotonic()
    first_at = None
    try:
        while time.monotonic() - t0 < seconds:
            frame = await asyncio.wait_for(track.recv(), 5)
            if first_at is None:
                first_at = time.monotonic() - t0
            frames += 1
            rates.add(frame.sample_rate)
            layouts.add(frame.layout.name)
            formats.add(frame.format.name)
            if frame.format.name == "s16" and frame.layout.name == "stereo":
                inter = memoryview(bytes(frame.planes[0])).cast("h")[: 2 * frame.samples]
                left.extend(inter[0::2])
                right.extend(inter[1::2])
    except (asyncio.TimeoutError, MediaStreamError) as exc:
        print(f"receive stopped: {exc!r}")
    print(f"ice={pc.iceConnectionState} connection={pc.connectionState}")
    for t in pc.getTransceivers():
        # Private aioice state, read only for the printout: tolerate its absence.
        conn = getattr(getattr(t.receiver.transport, "transport", None), "_connection", None)
        pair = getattr(conn, "_nominated", {}).get(1)
        if pair is not None:
            print(f"selected pair: {pair.local_candidate.host}:{pair.local_candidate.port}"
                  f" -> {pair.remote_candidate.host}:{pair.remote_candidate.port}")
    rate = rates.pop() if len(rates) == 1 else 0
    tail = int(rate * 2) if rate else 0
    f_l = zero_cross_hz(left[-tail:], rate) if rate else 0.0
    f_r = zero_cross_hz(right[-tail:], rate) if rate else 0.0

    del_url = urllib.parse.urljoin(url, location)
    d_status, _, _ = await asyncio.to_thread(http, "DELETE", del_url)
    print(f"DELETE {location} status={d_status}")
    await pc.close()

    print(f"first frame after {first_at if first_at is not None else -1:.2f}s")
    print(f"left ~{f_l:.1f} Hz, right ~{f_r:.1f} Hz (zero-crossing estimate, last 2 s)")
    print(f"frames={frames} sample_rate={rate} channels={2 if layouts == {'stereo'} else layouts}"
          f" format={','.join(sorted(formats))} samples_per_channel={len(left)}")
    tones_ok = abs(f_l - expect[0]) < 2.0 and abs(f_r - expect[1]) < 2.0
    if not tones_ok:
        print(f"unexpected tones: wanted left {expect[0]} Hz, right {expect[1]} Hz")
    return 0 if frames > 0 and d_status == 200 and tones_ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--expect-left", type=float, default=440.0)
    parser.add_argument("--expect-right", type=float, default=660.0)
    args = parser.parse_args()
    # Same loopback-only rule as the server: no STUN, no non-loopback candidates.
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []
    sys.exit(asyncio.run(run(args.url, args.seconds, (args.expect_left, args.expect_right))))


if __name__ == "__main__":
    main()
