#include "mlkeeper/util/chunk_pipe.hpp"

#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>

#include <gtest/gtest.h>

namespace mlk::util {
namespace {

TEST(ChunkPipe, DeliversChunksInOrderWithBoundedBuffers) {
    ChunkPipe pipe(2, 16);
    std::thread producer([&] {
        for (int i = 0; i < 100; ++i) {
            Chunk c = pipe.acquire();
            auto s = std::to_string(i);
            std::memcpy(c.data.get(), s.data(), s.size());
            c.size = s.size();
            pipe.push(std::move(c));
        }
        pipe.close();
    });
    int expect = 0;
    while (auto c = pipe.pop()) {
        EXPECT_EQ(std::string(c->data.get(), c->size), std::to_string(expect++));
        pipe.release(std::move(*c));
    }
    producer.join();
    EXPECT_EQ(expect, 100);
}

TEST(ChunkPipe, ProducerErrorReachesConsumerAfterTheChunksBeforeIt) {
    ChunkPipe pipe(4, 8);
    std::thread producer([&] {
        Chunk c = pipe.acquire();
        c.size = 1;
        pipe.push(std::move(c));
        pipe.close(std::make_exception_ptr(std::runtime_error("disk on fire")));
    });
    producer.join();
    auto first = pipe.pop();
    ASSERT_TRUE(first.has_value());
    pipe.release(std::move(*first));
    try {
        (void)pipe.pop();
        FAIL() << "expected the producer's error";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "disk on fire");
    }
}

TEST(ChunkPipe, CancelUnblocksAProducerWaitingForABuffer) {
    ChunkPipe pipe(1, 8);
    bool cancelled = false;
    std::thread producer([&] {
        try {
            for (;;) {
                Chunk c = pipe.acquire();  // the second acquire blocks: nobody releases
                pipe.push(std::move(c));
            }
        } catch (const PipeCancelled&) {
            cancelled = true;
        }
    });
    auto c = pipe.pop();
    ASSERT_TRUE(c.has_value());
    pipe.cancel();
    producer.join();
    EXPECT_TRUE(cancelled);
}

TEST(ChunkPipe, CancelUnblocksAConsumerWaitingForAChunk) {
    ChunkPipe pipe(1, 8);
    bool cancelled = false;
    std::thread consumer([&] {
        try {
            (void)pipe.pop();  // nothing is ever pushed
        } catch (const PipeCancelled&) {
            cancelled = true;
        }
    });
    pipe.cancel();
    consumer.join();
    EXPECT_TRUE(cancelled);
}

}  // namespace
}  // namespace mlk::util
