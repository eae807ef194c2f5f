// A js-libp2p peer in a PSK v1 private network, for tests/net/test_pnet_interop.py.
//
//   node pnet_peer.mjs dial <multiaddr with /p2p/> <psk hex>
//       dials, runs identify and ping, prints one JSON line, exits 0 (1 on failure).
//   node pnet_peer.mjs listen <psk hex>
//       listens on 127.0.0.1, prints {"peerId", "addrs"}, then reports each inbound
//       connection as a JSON line until stdin closes.
//
// TCP + Noise + yamux, like p2pnet's hosts. js-libp2p 2.x: 3.x needs Node 22.

import './node20.mjs'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { preSharedKey } from '@libp2p/pnet'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

const print = (value) => process.stdout.write(JSON.stringify(value) + '\n')

function swarmKey (hex) {
  if (!/^[0-9a-f]{64}$/.test(hex)) {
    throw new Error('the PSK must be 64 lowercase hex characters')
  }
  return new TextEncoder().encode(`/key/swarm/psk/1.0.0/\n/base16/\n${hex}`)
}

async function node (hex, listen) {
  return createLibp2p({
    addresses: { listen: listen ? ['/ip4/127.0.0.1/tcp/0'] : [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionProtector: preSharedKey({ psk: swarmKey(hex) }),
    // identify is run explicitly on the dialled connection, so that its result is ours
    services: { identify: identify({ runOnConnectionOpen: false }), ping: ping() }
  })
}

async function dial (addr, hex) {
  const peer = await node(hex, false)
  try {
    const started = performance.now()
    const connection = await peer.dial(multiaddr(addr), { signal: AbortSignal.timeout(5000) })
    const connectMs = performance.now() - started
    const identified = await peer.services.identify.identify(connection, {
      signal: AbortSignal.timeout(5000)
    })
    const rttMs = await peer.services.ping.ping(multiaddr(addr), {
      signal: AbortSignal.timeout(5000)
    })
    print({
      ok: true,
      localPeerId: peer.peerId.toString(),
      remotePeerId: connection.remotePeer.toString(),
      connectMs,
      agentVersion: identified.agentVersion,
      protocolVersion: identified.protocolVersion,
      protocols: identified.protocols,
      rttMs
    })
  } finally {
    await peer.stop()
  }
}

async function listen (hex) {
  const peer = await node(hex, true)
  peer.addEventListener('connection:open', (event) => {
    print({ event: 'connection', remotePeerId: event.detail.remotePeer.toString() })
  })
  print({
    peerId: peer.peerId.toString(),
    addrs: peer.getMultiaddrs().map((ma) => ma.toString())
  })
  await new Promise((resolve) => {
    process.stdin.on('end', resolve)
    process.stdin.on('close', resolve)
    process.stdin.resume()
  })
  await peer.stop()
}

const [mode, ...args] = process.argv.slice(2)
try {
  if (mode === 'dial' && args.length === 2) {
    await dial(args[0], args[1])
  } else if (mode === 'listen' && args.length === 1) {
    await listen(args[0])
  } else {
    throw new Error('usage: pnet_peer.mjs dial <multiaddr> <psk hex> | listen <psk hex>')
  }
  process.exit(0)
} catch (error) {
  print({ ok: false, error: `${error.name}: ${error.message}` })
  process.exit(1)
}
