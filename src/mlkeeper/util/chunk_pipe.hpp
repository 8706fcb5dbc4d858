// A bounded hand-off of byte chunks from one producer thread to one consumer
// thread, with a fixed pool of buffers (constant memory) and errors carried
// across: the backup pipeline uses it to read/decompress ahead on one thread
// and to hash/write compressed output on another.
// Thread safety: one producer thread and one consumer thread; every method
// documents its side.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

namespace mlk::util {

struct Chunk {
    std::unique_ptr<char[]> data;
    std::size_t capacity = 0;
    std::size_t size = 0;  // bytes filled
};

// Thrown to the producer when the consumer has cancelled the pipe.
class PipeCancelled : public std::exception {
  public:
    const char* what() const noexcept override { return "pipe cancelled by its reader"; }
};

class ChunkPipe {
  public:
    ChunkPipe(std::size_t chunks, std::size_t chunk_size);

    // Producer: a free buffer (size 0), waiting for the consumer to return
    // one. Throws PipeCancelled once cancel() was called.
    Chunk acquire();
    // Producer: hands a filled chunk to the consumer.
    void push(Chunk c);
    // Producer: no more chunks; `error` (if any) is rethrown to the consumer
    // after the chunks already pushed.
    void close(std::exception_ptr error = nullptr);

    // Consumer: the next chunk, or nullopt at the end. Rethrows the
    // producer's error at the point it happened; PipeCancelled after cancel().
    std::optional<Chunk> pop();
    // Consumer: gives a chunk's buffer back to the pool.
    void release(Chunk c);
    // Either side: stop early; from then on acquire(), push() and pop()
    // throw PipeCancelled so every thread blocked on the pipe can unwind.
    void cancel();

  private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<Chunk> free_;
    std::deque<Chunk> ready_;
    std::exception_ptr error_;
    bool closed_ = false;
    bool cancelled_ = false;
};

}  // namespace mlk::util
