#!/usr/bin/env python3
"""Independent WHEP source for interop tests: Python aiortc + aiohttp, nothing from whep-bridge.

Why it exists: whep-bridge's own synthetic source (src/testsrc) shares code and assumptions
with the client under test, so a bug in both halves can cancel out. This server uses a
different WebRTC stack (aiortc: aioice, pyOpenSSL DTLS, pylibsrtp, libopus via PyAV) so an
end-to-end test against it proves real interoperability.

Protocol (WHEP, RFC 9725 subset, non-trickle):
  POST   /whep/<name>        body = SDP offer (application/sdp)
         -> 201, Content-Type: application/sdp, body = answer with all ICE candidates,
            Location: /whep/<name>/<id>
  DELETE /whep/<name>/<id>   -> 200, closes that peer connection (404 if unknown)
  GET    /health             -> 200 "ok" (readiness probe for test harnesses)

Media: every session gets its own track producing 20 ms stereo s16 frames at 48 kHz
(left = --freq, right = --freq-r), paced in real time; aiortc encodes them as Opus
48 kHz stereo (its OpusEncoder is hard-wired to stereo, 96 kbit/s, application=voip).

Network: no STUN/TURN servers are configured (aiortc would otherwise default to a public
STUN server) and aioice's host-address discovery is patched to 127.0.0.1 only, so every
candidate and every packet stays on loopback.

Prints "listening on http://HOST:PORT" (flushed) once the HTTP socket accepts requests.
"""

import argparse
import asyncio
import fractions
import logging
import math
import sys
import time
import uuid
from array import array

import aioice.ice
from aiohttp import web
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms at 48 kHz
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)

log = logging.getLogger("aiortc_whep")


def restrict_ice_to_loopback() -> None:
    """Make aioice gather host candidates on 127.0.0.1 only.

    aioice deliberately skips 127.0.0.1 and offers every other interface address; the tests
    must stay on loopback, and the client under test (whep-bridge) allows loopback
    candidates, so we swap the discovery function for one that returns loopback alone.
    """

    def loopback_only(use_ipv4: bool, use_ipv6: bool) -> list:
        return ["127.0.0.1"] if use_ipv4 else []

    aioice.ice.get_host_addresses = loopback_only


class StereoToneTrack(MediaStreamTrack):
    """Audio track: left/right sine tones as 20 ms s16 stereo frames, paced in real time.

    The phase is computed from the absolute sample index, so the tone is exactly
    continuous across frames (interop tests check continuity sample-accurately).
    """

    kind = "audio"

    def __init__(self, freq_l: float, freq_r: float, amplitude: float) -> None:
        super().__init__()
        self._freq_l = freq_l
        self._freq_r = freq_r
        self._amp = max(0.0, min(1.0, amplitude)) * 32767.0
        self._pts = 0
        self._start = None

    def _pcm(self, first: int) -> bytes:
        w_l = 2.0 * math.pi * self._freq_l / SAMPLE_RATE
        w_r = 2.0 * math.pi * self._freq_r / SAMPLE_RATE
        out = array("h", bytes(4 * FRAME_SAMPLES))
        for i in range(FRAME_SAMPLES):
            n = first + i
            out[2 * i] = int(round(self._amp * math.sin(w_l * n)))
            out[2 * i + 1] = int(round(self._amp * math.sin(w_r * n)))
        if sys.byteorder != "little":
            out.byteswap()
        return out.tobytes()

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            due = self._start + self._pts / SAMPLE_RATE
            if due > now:
                await asyncio.sleep(due - now)
        frame = AudioFrame(format="s16", layout="stereo", samples=FRAME_SAMPLES)
        frame.planes[0].update(self._pcm(self._pts))
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = TIME_BASE
        self._pts += FRAME_SAMPLES
        return frame


class WhepServer:
    """Holds the live sessions; one RTCPeerConnection + one track per WHEP POST."""

    def __init__(self, freq_l: float, freq_r: float, amplitude: float) -> None:
        self.freq_l = freq_l
        self.freq_r = freq_r
        self.amplitude = amplitude
        self.sessions: dict = {}

    async def post(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        ctype = request.headers.get("Content-Type", "")
        if not ctype.lower().startswith("application/sdp"):
            return web.Response(status=415, text="expected application/sdp")
        offer = await request.text()
        if "m=audio" not in offer:
            return web.Response(status=400, text="offer has no audio section")

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        sid = uuid.uuid4().hex
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            opus = [
                c
                for c in RTCRtpSender.getCapabilities("audio").codecs
                if c.mimeType.lower() == "audio/opus"
            ]
            audio = [t for t in pc.getTransceivers() if t.kind == "audio"]
            if not audio:
                raise ValueError("no audio transceiver after applying the offer")
            audio[0].setCodecPreferences(opus)
            # addTrack reuses the offer's audio transceiver: the answer becomes sendonly.
            pc.addTrack(StereoToneTrack(self.freq_l, self.freq_r, self.amplitude))
            answer = await pc.createAnswer()
            # aiortc gathers all candidates inside setLocalDescription (non-trickle).
            await pc.setLocalDescription(answer)
        except Exception as exc:  # a bad offer must give an HTTP error, not a crash
            await pc.close()
            log.warning("session %s rejected: %s", sid, exc)
            return web.Response(status=400, text=f"cannot answer offer: {exc}")

        self.sessions[sid] = pc

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("session %s state %s", sid, pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self.drop(sid)

        location = f"/whep/{name}/{sid}"
        log.info("session %s created for %s", sid, name)
        return web.Response(
            status=201,
            body=pc.localDescription.sdp.encode(),
            headers={"Content-Type": "application/sdp", "Location": location},
        )

    async def delete(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        if sid not in self.sessions:
            return web.Response(status=404, text="no such session")
        await self.drop(sid)
        log.info("session %s deleted", sid)
        return web.Response(status=200, text="deleted")

    async def drop(self, sid: str) -> None:
        pc = self.sessions.pop(sid, None)
        if pc is not None:
            await pc.close()

    async def close_all(self, _app: web.Application) -> None:
        for sid in list(self.sessions):
            await self.drop(sid)


async def health(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def build_app(server: WhepServer) -> web.Application:
    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/whep/{name}", server.post)
    app.router.add_delete("/whep/{name}/{sid}", server.delete)
    app.on_shutdown.append(server.close_all)
    return app


async def serve(args: argparse.Namespace) -> None:
    server = WhepServer(args.freq, args.freq_r, args.amplitude)
    runner = web.AppRunner(build_app(server))
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    print(f"listening on http://{args.host}:{args.port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--freq", type=float, default=440.0, help="left tone, Hz")
    parser.add_argument("--freq-r", type=float, default=660.0, help="right tone, Hz")
    parser.add_argument(
        "--amplitude", type=float, default=0.3, help="per-channel peak, 0..1 of full scale"
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    restrict_ice_to_loopback()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
