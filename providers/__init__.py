"""Telephony provider adapters. They speak in small frozen dataclasses (providers.base), never in
proto messages, and never import grpc, protobuf or voicecall_*."""
