// Boost.Beast, compiled once for all of dtx (BOOST_BEAST_SEPARATE_COMPILATION,
// set publicly by dtx_rest): every other translation unit sees only Beast's
// declarations. Asio is compiled once in common/asio_impl.cc.
#include <boost/beast/src.hpp>
