// The small JSON field helpers shared by the core and the routes.
#include "core/kv/json_util.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

namespace medkit::core::kv {
namespace {

TEST(JsonUtil, IntegerFieldTakesIntegersIntegralDoublesAndDecimalStrings) {
  auto o = boost::json::parse(R"({"i":-7,"u":18446744073709551615,"d":3.0,"f":3.5,"s":"42",
    "neg":"-5","big":9e16,"plus":"+1","space":" 1","empty":"","x":"1a","b":true,"n":null})")
               .as_object();
  EXPECT_EQ(IntegerField(o, "i"), -7);
  EXPECT_EQ(IntegerField(o, "u"), std::nullopt);  // beyond int64
  EXPECT_EQ(IntegerField(o, "d"), 3);
  EXPECT_EQ(IntegerField(o, "f"), std::nullopt);
  EXPECT_EQ(IntegerField(o, "s"), 42);
  EXPECT_EQ(IntegerField(o, "neg"), -5);
  EXPECT_EQ(IntegerField(o, "big"), std::nullopt);
  for (const char* k : {"plus", "space", "empty", "x", "b", "n", "absent"}) {
    EXPECT_EQ(IntegerField(o, k), std::nullopt) << k;
  }
}

TEST(JsonUtil, IdFieldTakesStringsAndIntegers) {
  auto o = boost::json::parse(R"({"s":"12","i":34,"d":1.5})").as_object();
  EXPECT_EQ(IdField(o, "s"), "12");
  EXPECT_EQ(IdField(o, "i"), "34");
  EXPECT_EQ(IdField(o, "d"), "");
  EXPECT_EQ(IdField(o, "absent"), "");
}

}  // namespace
}  // namespace medkit::core::kv
