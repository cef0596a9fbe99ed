/**
 * A backend in a process of its own, so a test can kill it mid-transfer
 * (SIGKILL: no goodbye from the program, only what the kernel does with its
 * sockets). It listens on 127.0.0.1, prints its port, reads slowly (paused
 * for good after the first chunk, so bytes wait unread in its socket: the
 * kernel resets such a connection when its owner dies) and sends a little
 * to each client so the download side is live too.
 */
const listener = Bun.listen({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    open(socket) {
      socket.write("hello from the backend\n");
    },
    data(socket) {
      socket.pause();
    },
  },
});
process.stdout.write(`${listener.port}\n`);
