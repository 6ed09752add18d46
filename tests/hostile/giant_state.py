# expect: shape_error
# 130 state tensors of n*n entries for an n-row parameter.
HPARAMS = {"lr": 0.001}

def init(param):
    big = matmul(param, transpose(param))
    return {"k0": big, "k1": big, "k2": big, "k3": big, "k4": big, "k5": big, "k6": big, "k7": big, "k8": big, "k9": big, "k10": big, "k11": big, "k12": big, "k13": big, "k14": big, "k15": big, "k16": big, "k17": big, "k18": big, "k19": big, "k20": big, "k21": big, "k22": big, "k23": big, "k24": big, "k25": big, "k26": big, "k27": big, "k28": big, "k29": big, "k30": big, "k31": big, "k32": big, "k33": big, "k34": big, "k35": big, "k36": big, "k37": big, "k38": big, "k39": big, "k40": big, "k41": big, "k42": big, "k43": big, "k44": big, "k45": big, "k46": big, "k47": big, "k48": big, "k49": big, "k50": big, "k51": big, "k52": big, "k53": big, "k54": big, "k55": big, "k56": big, "k57": big, "k58": big, "k59": big, "k60": big, "k61": big, "k62": big, "k63": big, "k64": big, "k65": big, "k66": big, "k67": big, "k68": big, "k69": big, "k70": big, "k71": big, "k72": big, "k73": big, "k74": big, "k75": big, "k76": big, "k77": big, "k78": big, "k79": big, "k80": big, "k81": big, "k82": big, "k83": big, "k84": big, "k85": big, "k86": big, "k87": big, "k88": big, "k89": big, "k90": big, "k91": big, "k92": big, "k93": big, "k94": big, "k95": big, "k96": big, "k97": big, "k98": big, "k99": big, "k100": big, "k101": big, "k102": big, "k103": big, "k104": big, "k105": big, "k106": big, "k107": big, "k108": big, "k109": big, "k110": big, "k111": big, "k112": big, "k113": big, "k114": big, "k115": big, "k116": big, "k117": big, "k118": big, "k119": big, "k120": big, "k121": big, "k122": big, "k123": big, "k124": big, "k125": big, "k126": big, "k127": big, "k128": big, "k129": big}

def update(grad, param, state, step, hp):
    return -hp.lr * grad, state
