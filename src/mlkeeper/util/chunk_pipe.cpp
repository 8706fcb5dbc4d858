#include "mlkeeper/util/chunk_pipe.hpp"

namespace mlk::util {

ChunkPipe::ChunkPipe(std::size_t chunks, std::size_t chunk_size) {
    free_.reserve(chunks);
    for (std::size_t i = 0; i < chunks; ++i) {
        free_.push_back(Chunk{std::make_unique_for_overwrite<char[]>(chunk_size), chunk_size, 0});
    }
}

Chunk ChunkPipe::acquire() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return cancelled_ || !free_.empty(); });
    if (cancelled_) {
        throw PipeCancelled();
    }
    Chunk c = std::move(free_.back());
    free_.pop_back();
    c.size = 0;
    return c;
}

void ChunkPipe::push(Chunk c) {
    {
        std::lock_guard lock(mu_);
        if (cancelled_) {
            throw PipeCancelled();
        }
        ready_.push_back(std::move(c));
    }
    cv_.notify_all();
}

void ChunkPipe::close(std::exception_ptr error) {
    {
        std::lock_guard lock(mu_);
        closed_ = true;
        error_ = std::move(error);
    }
    cv_.notify_all();
}

std::optional<Chunk> ChunkPipe::pop() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !ready_.empty() || closed_ || cancelled_; });
    if (cancelled_) {
        throw PipeCancelled();
    }
    if (!ready_.empty()) {
        Chunk c = std::move(ready_.front());
        ready_.pop_front();
        return c;
    }
    if (error_) {
        std::rethrow_exception(error_);
    }
    return std::nullopt;
}

void ChunkPipe::release(Chunk c) {
    {
        std::lock_guard lock(mu_);
        free_.push_back(std::move(c));
    }
    cv_.notify_all();
}

void ChunkPipe::cancel() {
    {
        std::lock_guard lock(mu_);
        cancelled_ = true;
    }
    cv_.notify_all();
}

}  // namespace mlk::util
