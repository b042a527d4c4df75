"""Drive the gate with the published Python SDK (latchgate 0.2), unmodified.

usage: python_sdk_flow.py SOCKET TARGET_URL
Prints one JSON object describing what the SDK saw.
"""
import asyncio
import json
import sys

import latchgate


async def main(socket: str, url: str) -> None:
    seen = {}
    async with latchgate.LatchGateClient(socket=socket, public_base_url="http://localhost:3000") as client:
        await client.connect(scopes=["http.fetch"], max_calls=5)
        seen["session_id"] = client.session_id
        result = await client.execute("http_fetch", {"url": url})
        seen["receipt_id"] = result.receipt_id
        seen["output"] = result.output
        receipt = await client.get_receipt(result.receipt_id)
        seen["receipt_result_hash"] = receipt.result_hash
        egress = await client.get_action_egress("http_fetch")
        seen["egress"] = repr(egress)
        try:
            await client.execute("http_fetch", {"url": "https://not-allowed.test/"})
            seen["denied"] = None
        except latchgate.LatchGateDenied as denied:
            seen["denied"] = str(denied)
    print(json.dumps(seen))


asyncio.run(main(sys.argv[1], sys.argv[2]))
