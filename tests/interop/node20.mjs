// Node 20 lacks Promise.withResolvers (ES2024, Node 22), which libp2p 2.10's peer store
// calls through mortice 3.3 and it-queue. Imported first by pnet_peer.mjs; a no-op on
// Node 22 and later.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new this((res, rej) => {
      resolve = res
      reject = rej
    })
    return { promise, resolve, reject }
  }
}
