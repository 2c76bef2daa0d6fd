"""Pipecat's Twilio transport as the peer (runs ONLY in bench/.venv-peer, never imported by voicecall).

FastAPI websocket + TwilioFrameSerializer, one echo pipeline per call as Pipecat's examples do: the
caller's audio goes back out through the transport's paced output.
``bench/.venv-peer/bin/python bench/pipecat_peer.py --port P``
"""

# mypy: disable-error-code="import-not-found,misc,untyped-decorator"
# (runs in bench/.venv-peer, where pipecat, fastapi and uvicorn live; the project venv has none of them)
from __future__ import annotations

import argparse
import json
import sys

import uvicorn
from fastapi import FastAPI, WebSocket
from loguru import logger
from pipecat.frames.frames import Frame, InputAudioRawFrame, OutputAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport

# Pipecat logs every frame-pipeline step at DEBUG; a log line per event would be measured as Pipecat's cost.
logger.remove()
logger.add(sys.stderr, level="WARNING")
app = FastAPI()


class Echo(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            await self.push_frame(
                OutputAudioRawFrame(
                    audio=frame.audio, sample_rate=frame.sample_rate, num_channels=frame.num_channels
                )
            )
        else:
            await self.push_frame(frame, direction)


@app.websocket("/stream")
async def stream(websocket: WebSocket) -> None:
    await websocket.accept()
    it = websocket.iter_text()
    await it.__anext__()  # connected
    start = json.loads(await it.__anext__())
    serializer = TwilioFrameSerializer(
        stream_sid=start["start"]["streamSid"],
        call_sid=start["start"]["callSid"],
        params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
    )
    transport = FastAPIWebsocketTransport(
        websocket=websocket,
        params=FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_out_10ms_chunks=2,  # 20 ms media messages, as Twilio sends and voicecall paces
            add_wav_header=False,
            serializer=serializer,
        ),
    )
    pipeline = Pipeline([transport.input(), Echo(), transport.output()])
    task = PipelineTask(
        pipeline, params=PipelineParams(audio_in_sample_rate=8000, audio_out_sample_rate=8000)
    )
    await PipelineRunner(handle_sigint=False).run(task)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", ws="websockets")
